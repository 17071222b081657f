"""Read a file once, hash it, and turn it into the items the encoders take (by its modality's decoder).

Runs in worker threads; raises `DecodeError` with the reason a user sees when a file is skipped. A file's
items come as a stream (`Decoded.head`, then `Decoded.rest`): the first `HEAD` are decoded here, in the worker,
so that a file that cannot be decoded at all is found there; the rest, if any, are pulled by the embed stage as
it batches them, so a file with 100,000 items is never held decoded at once.
"""
from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any, Iterator

from ..errors import DecodeError
from ..modalities import DecodeContext, Item, Note, decoded_items, get_modality
from ..options import ItemOptions
from .walk import FileEntry

# Files larger than this are hashed and decoded by streaming from disk instead of from memory.
IN_MEMORY_LIMIT = 64 << 20
# Items decoded in the worker thread before the stream is handed on (an image, a song's windows, a document's
# passages: nearly every file is whole by then).
HEAD = 256


@dataclass
class Decoded:
    """A decoded file: `head` items already decoded, `rest` the stream of the others (None: there are none).

    Notes (and items of modalities the space has no tower for, counted in `dropped`) are gathered as the
    stream is read; read `notes` after it ends."""

    entry: FileEntry
    hash: str
    head: list[Item]
    rest: Iterator[Item] | None = None
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] | None = None  # date, date_source, tags (modalities/metadata.py)
    dropped: dict[str, int] = field(default_factory=dict)  # modality -> items the space has no tower for

    @property
    def note(self) -> str | None:
        """Something the user should know about an indexed file (e.g. only part of it), or None."""
        dropped = [f"{n:,} {m} item(s) not indexed (this space has no {m} tower)" for m, n in self.dropped.items()]
        return "; ".join(self.notes + dropped) or None


def read_and_hash(path: str, size: int) -> tuple[str, bytes | None]:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            if size <= IN_MEMORY_LIMIT:
                data = f.read()
                h.update(data)
                return h.hexdigest(), data
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
            return h.hexdigest(), None
    except OSError as e:
        raise DecodeError(f"cannot read: {e.strerror or e}") from None


class Decoder:
    """Turns a `FileEntry` into items for one space, through its modality's decoder."""

    def __init__(self, space: Any, *, options: ItemOptions | None = None) -> None:
        self.ctx = DecodeContext(space=space, options=options or ItemOptions())

    def decode(self, entry: FileEntry, digest: str, data: bytes | None) -> Decoded:
        """Decode a file already read (`data`, or None when too large to hold) and hashed."""
        if entry.size == 0 or (data is not None and len(data) == 0):
            raise DecodeError("empty file (0 bytes)")
        m = get_modality(entry.modality)
        if m.encoder(self.ctx.space) is None:
            raise DecodeError(m.missing_tower or f"this space has no {m.name} tower")
        d = Decoded(entry, digest, [])
        stream = self._items(d, decoded_items(m, data, entry.path, self.ctx))
        d.head = list(itertools.islice(stream, HEAD))
        if len(d.head) == HEAD:
            d.rest = stream
        d.meta = vars(m.metadata(data, entry.path)) if m.metadata is not None else None
        return d

    def _items(self, d: Decoded, stream: Iterator[Item | Note]) -> Iterator[Item]:
        """The items the space can encode; notes and the items it cannot go to `d`."""
        encodes: dict[str, bool] = {}
        for x in stream:
            if isinstance(x, Note):
                d.notes.append(x.text)
                continue
            mod = x.modality
            if mod not in encodes:
                encodes[mod] = get_modality(mod).encoder(self.ctx.space) is not None
            if encodes[mod]:
                yield x
            else:
                d.dropped[mod] = d.dropped.get(mod, 0) + 1
