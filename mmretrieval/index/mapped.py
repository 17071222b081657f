"""A reader's view of an IVF index: the base's inverted lists memory-mapped, what commits changed since beside them.

A reading process (`mmr search`, every `mmr serve` worker) opens an IVF base with faiss's `IO_FLAG_MMAP`: its
lists are read where a query probes them, through the page cache that every process mapping the same file shares,
so resident memory is the working set and N server workers do not hold N copies. faiss's mapped lists are
read-only (an add aborts the process), so the deltas committed since the base are replayed beside it: their
vectors into a small exact index in memory, their removals as tombstones that the base's answers skip. Both are
bounded by the deltas' share of the base (`segments.py`); a new base (compaction, or deltas grown past that
share) is mapped afresh. Writers load the base into memory and change it in place (`VectorIndex`).
"""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from ..errors import MMRError
from .segments import Delta
from .vector_index import IdFilter, VectorIndex, _check_ids, _check_k, _check_vectors
from .vectors_stream import CHUNK

OVERFETCH_GONE = 4096  # up to this many tombstones, an unfiltered search fetches that many more and drops them


class MappedIndex:
    """The `VectorIndex` reading contract over a memory-mapped base plus the changes since (read-only)."""

    def __init__(self, base: VectorIndex) -> None:
        self.base = base
        self.side = VectorIndex.create(base.dim)  # exact, in memory: vectors added since the base
        self._gone = np.empty(0, np.int64)          # sorted: base ids removed (or replaced) since
        self._base_ids: np.ndarray | None = None    # sorted, read from the lists once when first needed
        self._filters: dict[tuple[int, int], tuple[IdFilter, IdFilter]] = {}
        self._version = 0
        self.needs_base = False

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MappedIndex | VectorIndex":
        """The base at `path` mapped; an index that is not IVF (flat, HNSW) is read into memory as usual."""
        base = VectorIndex.load(path, mmap=True)
        return cls(base) if base.mapped else base

    # --- what the base holds, less what was removed since
    def _base_sorted(self) -> np.ndarray:
        if self._base_ids is None:
            self._base_ids = np.sort(self.base.ids())
        return self._base_ids

    def _in_base(self, ids: np.ndarray) -> np.ndarray:
        held = self._base_sorted()
        pos = np.minimum(np.searchsorted(held, ids), max(held.size - 1, 0))
        live = (held[pos] == ids) if held.size else np.zeros(ids.size, bool)
        return live & ~np.isin(ids, self._gone)

    @property
    def mapped(self) -> bool:
        return True

    @property
    def dim(self) -> int:
        return self.base.dim

    @property
    def ntotal(self) -> int:
        return self.base.ntotal - int(self._gone.size) + self.side.ntotal

    @property
    def kind(self) -> str:
        return self.base.kind

    @property
    def description(self) -> str:
        return f"{self.base.description}, lists memory-mapped"

    @property
    def ivf(self):
        return self.base.ivf

    @property
    def exact(self):
        return self.base.exact

    @property
    def lossy(self) -> bool:
        return self.base.lossy

    @property
    def index(self):
        return self.base.index

    def ids(self) -> np.ndarray:
        held = self._base_sorted()
        live = held[~np.isin(held, self._gone)] if self._gone.size else held
        return np.concatenate([live, self.side.ids()])

    def without_exact_row(self) -> np.ndarray:
        """(the side's vectors are exact themselves)"""
        return self.base.without_exact_row()

    # --- replaying commits
    def apply(self, delta: Delta) -> None:
        removed, ids = _check_ids(delta.removed), _check_ids(delta.ids)
        replaced = np.concatenate([removed, ids])
        if replaced.size:
            in_side = replaced[np.isin(replaced, self.side.ids())]
            if in_side.size:
                self.side._remove(in_side)
            from_base = replaced[self._in_base(replaced)]
            if from_base.size:
                self._gone = np.union1d(self._gone, from_base)
        if ids.size:
            vecs = _check_vectors(delta.vectors, self.dim)
            self.side.index.add_with_ids(self._as_the_writer_holds(vecs), ids)
            self.side._max_id, self.side._version = None, self.side._version + 1
        self._version += 1
        self._filters.clear()

    def _as_the_writer_holds(self, vecs: np.ndarray) -> np.ndarray:
        """The vectors as the writer's index scores them, so that reader and writer rank alike: float16 exact rows
        (SQ8, PQ), or an fp16 IVF's codes, which hold each vector's residual to its list's centroid in float16."""
        if self.exact is not None:
            return vecs.astype(np.float16).astype(np.float32)
        ivf = self.ivf
        if self.kind == "ivf-fp16" and ivf.by_residual:
            _, lists = ivf.quantizer.search(vecs, 1)
            centre = ivf.quantizer.reconstruct_batch(lists.ravel())
            return centre + (vecs - centre).astype(np.float16).astype(np.float32)
        return vecs

    def persisted(self) -> None:
        """A reader has nothing to write."""

    def changes(self) -> None:
        return None

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        raise MMRError("this index was opened for reading: its lists are memory-mapped")

    remove = save = add

    # --- reading
    def _base_filter(self, allowed: np.ndarray | IdFilter | None) -> IdFilter | None:
        """`allowed` less the tombstones (None: everything left in the base), made once per state of the index."""
        key = (id(allowed), self._version)
        got = self._filters.get(key)
        if got is None or got[0] is not allowed:
            ids = self._base_sorted() if allowed is None else \
                allowed.ids if isinstance(allowed, IdFilter) else _check_ids(allowed)
            if len(self._filters) > 16:
                self._filters.clear()
            got = self._filters[key] = (allowed, IdFilter(ids[~np.isin(ids, self._gone)]))
        return got[1]

    def search(self, queries: np.ndarray, k: int,
               allowed: np.ndarray | IdFilter | None = None) -> tuple[np.ndarray, np.ndarray]:
        _check_k(k)
        queries = _check_vectors(np.atleast_2d(queries), self.dim)
        if not self._gone.size:
            bs, bi = self.base.search(queries, k, allowed)
            if not self.side.ntotal:
                return bs, bi
        elif allowed is None and self._gone.size <= OVERFETCH_GONE:
            bs, bi = self.base.search(queries, k + int(self._gone.size))
            bi = np.where(np.isin(bi, self._gone), -1, bi)
        else:
            bs, bi = self.base.search(queries, k, self._base_filter(allowed))
        if not self.side.ntotal:
            return _top(bs, bi, k)
        ss, si = self.side.search(queries, k, allowed)
        return _top(np.concatenate([bs, ss], 1), np.concatenate([bi, si], 1), k)

    def range_search(self, queries: np.ndarray, radius: float, allowed: np.ndarray | IdFilter | None = None,
                     nprobe: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        base = self.base.range_search(queries, radius, allowed, nprobe)
        side = self.side.range_search(queries, radius, allowed) if self.side.ntotal else [None] * len(base)
        out = []
        for (bi, bs), extra in zip(base, side):
            keep = ~np.isin(bi, self._gone)
            bi, bs = bi[keep], bs[keep]
            if extra is not None and extra[0].size:
                bi, bs = np.concatenate([bi, extra[0]]), np.concatenate([bs, extra[1]])
                order = np.lexsort((bi, -bs))
                bi, bs = bi[order], bs[order]
            out.append((bi, bs))
        return out

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        ids = _check_ids(ids)
        out = np.empty((ids.size, self.dim), np.float32)
        side = np.isin(ids, self.side.ids())
        if side.any():
            out[side] = self.side.reconstruct(ids[side])
        if (~side).any():
            out[~side] = self.base.reconstruct(ids[~side])
        return out

    def iter_vectors(self, ids: np.ndarray | None = None, *, chunk: int = CHUNK,
                     stored: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        ids = self.ids() if ids is None else _check_ids(ids)
        side_ids = self.side.ids()
        for s in range(0, ids.size, chunk):
            part = ids[s:s + chunk]
            in_side = np.isin(part, side_ids)
            got = None
            for mask, source in ((~in_side, self.base), (in_side, self.side)):
                if mask.any():
                    _, vecs = next(source.iter_vectors(part[mask], chunk=int(mask.sum()), stored=stored))
                    if got is None:
                        got = np.empty((part.size, self.dim), vecs.dtype)
                    got[mask] = vecs
            yield part, got if got is not None else np.empty((0, self.dim), np.float32)

    all_vectors = VectorIndex.all_vectors  # the same reading, through this view's iter_vectors


def _top(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best `k` of each row (missing: id -1, score -inf), ties by id as faiss breaks them."""
    out_s = np.full((ids.shape[0], k), -np.inf, np.float32)
    out_i = np.full((ids.shape[0], k), -1, np.int64)
    for r in range(ids.shape[0]):
        ok = ids[r] >= 0
        s, i = scores[r][ok], ids[r][ok]
        order = np.lexsort((i, -s))[:k]
        out_s[r, :order.size], out_i[r, :order.size] = s[order], i[order]
    return out_s, out_i
