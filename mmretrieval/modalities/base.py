"""What a modality is, and the registry the rest of the code asks.

A `Modality` says, for one kind of content: which files it claims (by extension), how a file becomes
items (decode), which tower of a space encodes them, how a query value becomes a vector, how a hit is
described on the command line, and how it is thumbnailed. Indexing, search, the CLI and the server ask
the registry instead of switching on a modality's name.

A file's items need not be of its own modality: each `Item` names the modality it is encoded and searched
as (a document yields text passages and image figures; a video scenes, sound and subtitles). `decode`
yields them lazily, so a file with 100,000 items is never held decoded at once (`ingest.embed` batches
them across files as they come).

Two modalities may claim one extension: the one with the higher `claim_priority` takes it (a container
format over a bare stream: video over audio for `.webm`); equal priorities are an error at registration,
never a matter of which module was imported first.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..errors import UsageError
from ..options import ItemOptions


@dataclass
class Item:
    """One searchable item of a file: where it sits in the file, its text (text items), the encoder's input,
    and the modality it is encoded as (None: the decoding modality's own)."""

    locator: dict[str, Any]
    text: str | None
    payload: Any
    modality: str | None = None


@dataclass(frozen=True)
class Note:
    """Something the user should know about a file that is indexed (only in part, say), yielded by `decode`
    among its items."""

    text: str


@dataclass(frozen=True)
class DecodeContext:
    """What decoding needs from the space (image preprocessing, tokenizer, audio rate) and the index's item
    options (`options.ItemOptions`: how its files are cut into items)."""

    space: Any
    options: ItemOptions = field(default_factory=ItemOptions)


def _no_description(locator: dict[str, Any], text: str | None) -> tuple[str, str]:
    return "", ""


@dataclass(frozen=True)
class Modality:
    name: str
    # Lower-case extensions (".jpg") this modality claims; a function, since some lists come from the
    # installed libraries (every format Pillow decodes).
    extensions: Callable[[], Iterable[str]]
    # (bytes of the file or None when too large to hold, its path, context) -> its items, and any `Note`s, in
    # order: a generator streams them. (The older form, a tuple (items, note or None), is still taken.)
    # Raises DecodeError with the reason a user sees.
    decode: Callable[[bytes | None, str, DecodeContext], Iterable[Item | Note] | tuple[list[Item], str | None]]
    # The space's encoder for this modality, or None when the space has no tower for it.
    encoder: Callable[[Any], Any]
    # (encoder, query value) -> one L2-normalised vector.
    encode_query: Callable[[Any, Any], np.ndarray]
    # A query value may be a file path (checked to exist before loading any model).
    file_query: bool = True
    # Raises UsageError for a query value this modality cannot take (checked before any model loads).
    check_query: Callable[[Any], None] | None = None
    # (locator, text) -> (what follows the path, what follows that) in a CLI hit line.
    describe: Callable[[dict[str, Any], str | None], tuple[str, str]] = _no_description
    # item row -> (cache file name, media type, function making the bytes), or None: no thumbnail.
    thumbnail: Callable[[Any], tuple[str, str, Callable[[], bytes]] | None] | None = None
    # The skip reason for its files in a space without its tower.
    missing_tower: str = ""
    media_types: dict[str, str] = field(default_factory=dict)  # extension -> content type, where Python's guess is off
    # (bytes or None, path) -> FileMeta: the date the content was made and its tags (see metadata.py), or None.
    metadata: Callable[[bytes | None, str], Any] | None = None
    # Which modality takes an extension that several claim: the highest; a tie is refused at registration.
    claim_priority: int = 0
    # A container of other modalities' items (a video's scenes, sound and subtitles): never a query and no
    # tower of its own (`encoder` says only whether its files can be indexed); as a result type it means the
    # items of its files, grouped by file.
    container: bool = False
    # One file's items once encoded, as (locator, text, modality) tuples, and their vectors -> what is stored (a
    # video's frame samples merged into scenes); runs wherever the file is embedded.
    finish: Callable[[list[tuple], np.ndarray], tuple[list[tuple], np.ndarray]] | None = None
    # Near-duplicate review (`collection.dupes`): item row -> a small summary of the item's own content (a
    # picture's pixels, a sound's spectrogram, a passage's words), and (summary, summary) -> how alike in [0, 1].
    # Vectors find the candidates; this tells a re-saved copy from a near neighbour they rate as close (the next
    # shot of a burst). None: vectors alone decide.
    sketch: Callable[[Any], Any] | None = None
    likeness: Callable[[Any, Any], float] | None = None
    # (path, the names in its folder or None) -> other files read with it (a video's sidecar subtitles): a
    # change to one of them re-indexes the file.
    companions: Callable[[str, Iterable[str] | None], list[str]] | None = None


_REGISTRY: dict[str, Modality] = {}
_BY_EXT: dict[str, str] | None = None


def register_modality(m: Modality, *, replace: bool = False) -> Modality:
    """Make a modality known to indexing, search, the CLI and the server."""
    global _BY_EXT
    if m.name in _REGISTRY and not replace:
        raise UsageError(f"a modality named {m.name!r} is already registered (pass replace=True to override)")
    mine = {e.lower() for e in m.extensions()}
    for other in _REGISTRY.values():
        if other.name == m.name or other.claim_priority != m.claim_priority:
            continue
        both = sorted(mine & {e.lower() for e in other.extensions()})
        if both:
            raise UsageError(f"modalities {other.name!r} and {m.name!r} both claim {', '.join(both)} at priority "
                             f"{m.claim_priority}; give one a higher claim_priority")
    _REGISTRY[m.name] = m
    _BY_EXT = None
    return m


def unregister_modality(name: str) -> None:
    global _BY_EXT
    _REGISTRY.pop(name, None)
    _BY_EXT = None


def get_modality(name: str) -> Modality:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown modality {name!r}; valid: {', '.join(_REGISTRY)}") from None


def modalities() -> list[Modality]:
    return list(_REGISTRY.values())


def modality_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def item_modality_names() -> tuple[str, ...]:
    """The modalities items are encoded as, and queries given in (not containers such as video)."""
    return tuple(n for n, m in _REGISTRY.items() if not m.container)


def modality_of(path: str | os.PathLike) -> str | None:
    """The modality that claims a file by its extension, or None."""
    global _BY_EXT
    if _BY_EXT is None:
        table: dict[str, str] = {}
        for m in sorted(_REGISTRY.values(), key=lambda m: m.claim_priority):  # the highest claim is written last
            for ext in m.extensions():
                table[ext.lower()] = m.name
        _BY_EXT = table
    return _BY_EXT.get(os.path.splitext(os.fspath(path))[1].lower())


def decoded_items(m: Modality, data: bytes | None, path: str, ctx: DecodeContext) -> Iterator[Item | Note]:
    """`m.decode`'s items and notes as one stream, each item with its modality filled in."""
    out = m.decode(data, path, ctx)
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], list) and not isinstance(out[1], Item):
        items, note = out  # the older form: every item at once, one note
        out = [*items, *([Note(note)] if note else [])]
    for x in out:
        if isinstance(x, Item) and x.modality is None:
            x.modality = m.name
        yield x
