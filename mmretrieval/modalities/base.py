"""What a modality is, and the registry the rest of the code asks.

A `Modality` says, for one kind of content: which files it claims (by extension), how a file becomes
items (decode), which tower of a space encodes them, how a query value becomes a vector, how a hit is
described on the command line, and how it is thumbnailed. Indexing, search, the CLI and the server ask
the registry instead of switching on a modality's name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from ..errors import UsageError


@dataclass
class Item:
    """One searchable item of a file: where it sits in the file, its text (text items), the encoder's input."""

    locator: dict[str, Any]
    text: str | None
    payload: Any


@dataclass(frozen=True)
class DecodeContext:
    """What decoding needs from the space (image preprocessing, tokenizer, audio rate) and the run's options."""

    space: Any
    pool_audio: bool = False


def _no_description(locator: dict[str, Any], text: str | None) -> tuple[str, str]:
    return "", ""


@dataclass(frozen=True)
class Modality:
    name: str
    # Lower-case extensions (".jpg") this modality claims; a function, since some lists come from the
    # installed libraries (every format Pillow decodes).
    extensions: Callable[[], Iterable[str]]
    # (bytes of the file or None when too large to hold, its path, context) -> (items, a note for the report or None).
    # Raises DecodeError with the reason a user sees.
    decode: Callable[[bytes | None, str, DecodeContext], tuple[list[Item], str | None]]
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


_REGISTRY: dict[str, Modality] = {}
_BY_EXT: dict[str, str] | None = None


def register_modality(m: Modality, *, replace: bool = False) -> Modality:
    """Make a modality known to indexing, search, the CLI and the server."""
    global _BY_EXT
    if m.name in _REGISTRY and not replace:
        raise UsageError(f"a modality named {m.name!r} is already registered (pass replace=True to override)")
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


def modality_of(path: str | os.PathLike) -> str | None:
    """The modality that claims a file by its extension, or None."""
    global _BY_EXT
    if _BY_EXT is None:
        table: dict[str, str] = {}
        for m in _REGISTRY.values():  # the first registered claim wins
            for ext in m.extensions():
                table.setdefault(ext.lower(), m.name)
        _BY_EXT = table
    return _BY_EXT.get(os.path.splitext(os.fspath(path))[1].lower())
