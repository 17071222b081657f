"""Vector files on disk: a base (a whole FAISS index) plus delta segments (what one checkpoint changed).

A checkpoint that changed 200 items of a million writes a delta of those 200 vectors and tombstones, not
the whole index again; the base is rewritten when the deltas grow past a share of it (or at `mmr compact`).
Every file is written whole under a temporary name, fsynced and renamed, so a reader sees a complete
file or none; which files make the index is named by the catalog (see `store.py`).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import MMRError

DELTA_SUFFIX = ".delta"
MAX_DELTAS = 64          # more segments than this make loading slow: rewrite the base
DELTA_SHARE = 0.25       # deltas together above this share of the base's size: rewrite the base


@dataclass(frozen=True)
class Delta:
    ids: np.ndarray        # int64 [n]: ids added
    vectors: np.ndarray    # float32 [n, dim]
    removed: np.ndarray    # int64 [m]: ids removed (tombstones), applied before the additions

    @property
    def empty(self) -> bool:
        return self.ids.size == 0 and self.removed.size == 0


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """`write(tmp)` fills a temp file in the same folder; it is fsynced, renamed to `path`, the folder fsynced."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_delta(path: Path, delta: Delta) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, ids=np.asarray(delta.ids, np.int64), vectors=np.asarray(delta.vectors, np.float32),
                     removed=np.asarray(delta.removed, np.int64))
    atomic_write(path, write)


def read_delta(path: Path) -> Delta:
    try:
        with np.load(path, allow_pickle=False) as z:
            return Delta(z["ids"], z["vectors"], z["removed"])
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise MMRError(f"cannot read vector segment {path}: {e}") from None


def is_delta(name: str) -> bool:
    return name.endswith(DELTA_SUFFIX)


def base_is_due(base_bytes: int, delta_bytes: list[int], new_bytes: int) -> bool:
    """Rewrite the base rather than add a delta? (loading replays every delta; keep them few and small)"""
    return len(delta_bytes) + 1 > MAX_DELTAS or sum(delta_bytes) + new_bytes > DELTA_SHARE * max(base_bytes, 1)
