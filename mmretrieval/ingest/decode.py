"""Read a file once, hash it, and turn it into the items the encoders take (by its modality's decoder).

Runs in worker threads; raises `DecodeError` with the reason a user sees when a file is skipped.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ..errors import DecodeError
from ..modalities import DecodeContext, Item, get_modality
from .walk import FileEntry

# Files larger than this are hashed and decoded by streaming from disk instead of from memory.
IN_MEMORY_LIMIT = 64 << 20

@dataclass
class Decoded:
    entry: FileEntry
    hash: str
    items: list[Item]
    note: str | None = None  # something the user should know about an indexed file (e.g. only part of it)
    meta: dict[str, Any] | None = None  # date, date_source, tags (modalities/metadata.py)


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

    def __init__(self, space: Any, *, pool_audio: bool = False) -> None:
        self.ctx = DecodeContext(space=space, pool_audio=pool_audio)

    def decode(self, entry: FileEntry, digest: str, data: bytes | None) -> Decoded:
        """Decode a file already read (`data`, or None when too large to hold) and hashed."""
        if entry.size == 0 or (data is not None and len(data) == 0):
            raise DecodeError("empty file (0 bytes)")
        m = get_modality(entry.modality)
        if m.encoder(self.ctx.space) is None:
            raise DecodeError(m.missing_tower or f"this space has no {m.name} tower")
        items, note = m.decode(data, entry.path, self.ctx)
        meta = vars(m.metadata(data, entry.path)) if m.metadata is not None else None
        return Decoded(entry, digest, items, note, meta)
