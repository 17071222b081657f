"""The one FAISS index: every modality's vectors, ids = catalog item ids, inner product on unit vectors."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import MMRError, UsageError
from .exact_rows import ExactRows
from .openmp import load_faiss
from .segments import Delta, atomic_write
from .vectors_stream import CHUNK, unit_rows

faiss = load_faiss()  # torch first where towers may run: see openmp.py

# One runtime, one more consequence: right after a torch op its OpenMP workers still spin on the cores, so
# a multi-threaded faiss search of one query waited for them (a 1 M IVF search took 8-10 ms after the text
# tower instead of 2-4 ms). A few queries gain nothing from threads anyway; they search on the calling thread.
FEW_QUERIES = 4

NORM_TOLERANCE = 1e-3
POST_FILTER_SHARE = 0.5  # a filter letting through at least this share of the items is applied after search
# A filter keeping at most this many floats' worth of vectors (16 k items of 512 dims, 64 MB) is searched
# exactly: brute force over its vectors. An approximate index with a selective filter would otherwise miss
# hits (IVF probes lists where the allowed items are not); brute force over 1 % of 1 M items takes ~1-2 ms.
EXACT_FILTER_FLOATS = 16 << 20
JOURNAL_MIN_BYTES = 64 << 20  # changes journalled for a delta segment before a whole write is preferred
LOSSY_KINDS = ("ivf-sq8", "ivf-pq")  # their stored codes give approximate scores: re-scored from exact rows
# A range search of a lossy index asks faiss for this much below the radius (the codes' scores err, PQ's the more
# the fewer bytes a vector), then keeps what the exact rows put at or above it.
RANGE_SLACK = 0.1


def _ivf_from_id_map(index: faiss.IndexIDMap2) -> faiss.IndexIVF:
    """The IVF inside an id map (how IVF was stored before), its lists given the external ids. The map still
    owns it and must be kept alive with it (handing the ownership to Python broke SWIG's type table)."""
    ivf = faiss.downcast_index(index.index)
    id_map = faiss.vector_to_array(index.id_map).astype(np.int64)
    faiss.extract_index_ivf(ivf).set_direct_map_type(faiss.DirectMap.NoMap)
    lists = faiss.extract_index_ivf(ivf).invlists
    for i in range(lists.nlist):
        n = lists.list_size(i)
        if n:
            stored = faiss.rev_swig_ptr(lists.get_ids(i), n)  # a view: written in place
            stored[:] = id_map[stored]
    index.id_map.resize(0)  # no longer used: free it
    return ivf


def _check_vectors(vecs: np.ndarray, dim: int) -> np.ndarray:
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    if vecs.ndim != 2 or vecs.shape[1] != dim:
        raise UsageError(f"vectors must have shape [N, {dim}], got {list(vecs.shape)}")
    if vecs.shape[0] and not np.isfinite(vecs).all():
        raise UsageError("vectors contain NaN or infinite values")
    norms = np.linalg.norm(vecs, axis=1)
    if vecs.shape[0] and np.abs(norms - 1.0).max() > NORM_TOLERANCE:
        # Inner product is cosine only on unit vectors: refuse rather than silently change the metric.
        raise UsageError("vectors must be L2-normalised (the index metric is cosine = inner product on unit vectors)")
    return vecs


def _check_k(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise UsageError(f"k must be a positive integer, got {k!r}")


def _check_ids(ids: np.ndarray) -> np.ndarray:
    ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
    if ids.size and ids.min() < 0:
        raise UsageError("ids must be non-negative")
    return ids


def id_bitmap(ids: np.ndarray) -> tuple[int, np.ndarray]:
    """A packed bitmap of `ids` for faiss.IDSelectorBitmap: (length in bytes, bytes); bit i set = id i allowed.

    faiss takes the length in *bytes*: passing the bit count makes it read past the buffer.
    """
    n = int(ids.max()) + 1 if ids.size else 1
    bits = np.zeros(n, dtype=bool)
    bits[ids] = True
    packed = np.packbits(bits, bitorder="little")
    return int(packed.size), packed


class IdFilter:
    """A set of allowed ids as the packed bitmap faiss reads; build once, search with it many times. A small
    set also keeps its vectors (for exact search), fetched once per state of the index."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = _check_ids(ids)
        self.n, self.bits = id_bitmap(self.ids) if self.ids.size else (0, np.zeros(1, np.uint8))
        self._vectors: tuple[Any, np.ndarray, np.ndarray] | None = None  # (index state, ids, vectors)

    @property
    def empty(self) -> bool:
        return self.ids.size == 0


class VectorIndex:
    """Inner-product vectors with the catalog's item ids.

    Flat and HNSW sit under `faiss.IndexIDMap2`; IVF types hold the ids themselves (`add_with_ids` and a
    hash-table direct map), so removing a vector is O(removed), with no rebuild and no retraining. The index
    keeps a journal of what changed since it was last written, from which the store writes a small delta
    file per checkpoint instead of the whole index (see `segments.py`). A lossy index (SQ8, PQ) keeps `exact`
    rows beside it and re-scores its candidates with them (see `exact_rows.py`).
    """

    FILE = "vectors.faiss"

    def __init__(self, index: faiss.Index, exact: ExactRows | None = None) -> None:
        self._owner: faiss.Index | None = None
        self.exact = exact
        migrated = False
        if isinstance(index, faiss.IndexIDMap2) and faiss.try_extract_index_ivf(faiss.downcast_index(index.index)):
            # a file written before IVF held its ids
            self._owner, index, migrated = index, _ivf_from_id_map(index), True
        if faiss.try_extract_index_ivf(index) is None and not isinstance(index, faiss.IndexIDMap2):
            index = faiss.IndexIDMap2(index)
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise MMRError("the index metric is not inner product; it was not built by mmretrieval for cosine")
        self._set_index(index)  # not yet written: the next write is a whole index (`load` says otherwise)
        self._migrated = migrated

    def _set_index(self, index: faiss.Index) -> None:
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            # faiss's default parallel mode (over queries) stays: a few queries run on one thread (see
            # FEW_QUERIES; splitting one query's lists over threads, 2.3 ms alone at 1 M, took 28 ms right
            # after a tower), and batches are best split by query.
            if ivf.direct_map.type != faiss.DirectMap.Hashtable:
                ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct and remove by id
        self.index = index
        self._max_id: int | None = None  # an upper bound of the stored ids, computed once when needed
        self._version = getattr(self, "_version", 0) + 1  # changes with every add or removal
        self.needs_base = True
        self._journal_clear()

    # --- the journal of changes since the last write (a delta segment)
    def _journal_clear(self) -> None:
        self._added: list[tuple[np.ndarray, np.ndarray]] = []
        self._removed: list[np.ndarray] = []
        self._journal_bytes = 0

    def changes(self) -> Delta | None:
        """What changed since the last `persisted()`: ids and vectors added, ids removed. None when only a
        whole index can say it (a new structure, a conversion, a rebuilt graph, or changes too large to journal)."""
        if self.needs_base:
            return None
        ids = np.concatenate([a[0] for a in self._added]) if self._added else np.empty(0, np.int64)
        vecs = np.concatenate([a[1] for a in self._added]) if self._added else np.empty((0, self.dim), np.float32)
        removed = np.unique(np.concatenate(self._removed)) if self._removed else np.empty(0, np.int64)
        return Delta(ids, vecs, removed)

    def persisted(self) -> None:
        """The current state is on disk (as a whole index or base + deltas): start a new journal."""
        self.needs_base = False
        self._journal_clear()

    def _journal(self, added: tuple[np.ndarray, np.ndarray] | None = None, removed: np.ndarray | None = None) -> None:
        if self.needs_base:
            return
        if added is not None:
            self._added.append((added[0].copy(), added[1].copy()))
            self._journal_bytes += added[1].nbytes + added[0].nbytes
        if removed is not None and removed.size:
            # An id added since the last write and removed again never reaches the disk; the tombstone is
            # kept anyway in case the id was also in the base (replay removes before it adds).
            self._added = [(i[k], v[k]) for i, v in self._added for k in [~np.isin(i, removed)] if k.any()]
            self._removed.append(removed.copy())
            self._journal_bytes += removed.nbytes
        # Past a quarter of the index a whole write is due anyway: stop holding copies of the vectors.
        if self._journal_bytes > max(JOURNAL_MIN_BYTES, self.ntotal * self.dim * 4 // 4):
            self.needs_base = True
            self._journal_clear()

    def apply(self, delta: Delta) -> None:
        """Replay a delta segment: remove its tombstones, then add its vectors. Added ids already present
        (a base rewritten by hand after the delta) are replaced, so a replay never fails on duplicates."""
        removed, ids = _check_ids(delta.removed), _check_ids(delta.ids)
        if removed.size:
            self._remove(removed)
            self._max_id = None
        if ids.size:
            if int(ids.min()) <= self._upper_id():  # never, unless the files were changed from outside
                present = ids[np.isin(ids, self.ids())]
                if present.size:
                    self._remove(present)
            vecs = _check_vectors(delta.vectors, self.dim)
            self.index.add_with_ids(vecs, ids)
            if self.exact is not None:
                self.exact.add(ids, vecs)
            self._max_id = max(self._upper_id(), int(ids.max()))
            self._version += 1

    @property
    def ivf(self) -> faiss.IndexIVF | None:
        """The IVF structure (to read or tune nlist/nprobe), or None for flat and HNSW."""
        return faiss.try_extract_index_ivf(self.index)

    @property
    def _inner(self) -> faiss.Index:
        return faiss.downcast_index(self.index.index) if isinstance(self.index, faiss.IndexIDMap2) else self.index

    @classmethod
    def create(cls, dim: int) -> "VectorIndex":
        if not isinstance(dim, int) or dim < 1:
            raise UsageError(f"dim must be a positive integer, got {dim!r}")
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)))

    @classmethod
    def load(cls, path: str | os.PathLike, *, mmap: bool = False) -> "VectorIndex":
        """The index written at `path`. With `mmap`, an IVF index's lists stay in the file, memory-mapped and
        read-only (`mapped`: see `mapped.py`); other types are read whole either way."""
        try:
            index = faiss.read_index(os.fspath(path), (faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY) if mmap else 0)
            if mmap and (faiss.try_extract_index_ivf(index) is None or isinstance(index, faiss.IndexIDMap2)):
                index = faiss.read_index(os.fspath(path))  # flat, HNSW, or IVF under an id map (older files)
            elif mmap:
                # Mapped lists "prefetch" the probed lists with a pool of threads started at every search: 2.5 ms
                # a one-query search of 200 k vectors (0.25 ms in memory, 0.22 ms mapped without it).
                faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists).prefetch_nthread = 0
        except RuntimeError as e:
            if not os.path.exists(path):  # faiss says "could not open": let a reader retry a replaced file
                raise FileNotFoundError(path) from None
            raise MMRError(f"cannot read vector index {path}: {str(e).splitlines()[0]}") from None
        vi = cls(index, ExactRows.load(Path(path)))
        if not vi._migrated:  # a migrated file is rewritten whole, once
            vi.persisted()
        return vi

    def save(self, path: str | os.PathLike) -> None:
        """Write the whole index atomically (temp file, fsync, rename, fsync of the folder), its exact rows beside."""
        if self.exact is not None:
            self.exact.save(Path(path), self.ids())
        atomic_write(Path(path), lambda tmp: faiss.write_index(self.index, tmp))

    def without_exact_row(self) -> np.ndarray:
        """The ids a lossy index holds no exact row for (none, unless its files were changed from outside)."""
        return self.exact.missing(self.ids()) if self.exact is not None else np.empty(0, np.int64)

    @property
    def mapped(self) -> bool:
        """Are the lists memory-mapped from the file (read-only: a reader's view, see `mapped.py`)?"""
        ivf = self.ivf
        return ivf is not None and isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.OnDiskInvertedLists)

    @property
    def lossy(self) -> bool:
        """Are the vectors read back (and the scores) approximations? Not where exact rows are kept."""
        return self.kind in LOSSY_KINDS and self.exact is None

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def kind(self) -> str:
        """flat, hnsw, ivf-fp16, ivf-flat, ivf-sq8 or ivf-pq (see `choose.py`)."""
        inner = self._inner
        if isinstance(inner, faiss.IndexHNSW):
            return "hnsw"
        if isinstance(inner, faiss.IndexIVFScalarQuantizer):
            return "ivf-fp16" if inner.sq.qtype == faiss.ScalarQuantizer.QT_fp16 else "ivf-sq8"
        if isinstance(inner, faiss.IndexIVF):
            return "ivf-flat" if isinstance(inner, faiss.IndexIVFFlat) else "ivf-pq"
        return "flat"

    @property
    def description(self) -> str:
        inner = self._inner
        if isinstance(inner, faiss.IndexIVF):
            rerank = f", re-scored x{self.exact.factor}" if self.exact is not None else ""
            return f"{self.kind} (nlist {inner.nlist}, nprobe {inner.nprobe}{rerank})"
        if isinstance(inner, faiss.IndexHNSW):
            return f"hnsw (M 32, efSearch {inner.hnsw.efSearch})"
        return "flat (exact)"

    @classmethod
    def build(cls, choice, dim: int, train: np.ndarray | None = None) -> "VectorIndex":
        """An empty index of the chosen type; IVF types are trained on `train` (representative vectors)."""
        inner = faiss.index_factory(dim, choice.factory, faiss.METRIC_INNER_PRODUCT)
        if choice.needs_training:
            if train is None or train.shape[0] < choice.min_train:
                raise UsageError(f"{choice.kind} needs at least {choice.min_train} vectors to train on")
            inner.train(_check_vectors(train, dim))
            faiss.extract_index_ivf(inner).nprobe = choice.nprobe
            return cls(inner, ExactRows(dim) if choice.kind in LOSSY_KINDS else None)
        if choice.kind == "hnsw":
            inner.hnsw.efSearch = choice.ef_search
            inner.hnsw.efConstruction = 80
        return cls(faiss.IndexIDMap2(inner))

    def _rebuild_hnsw_without(self, ids: np.ndarray) -> int:
        """HNSW cannot delete from its graph: rebuild it from the vectors that stay."""
        keep_ids, vecs = self.all_vectors()
        keep = ~np.isin(keep_ids, ids)
        if keep.all():
            return 0
        inner = self._inner
        fresh = faiss.index_factory(self.dim, "HNSW32,Flat", faiss.METRIC_INNER_PRODUCT)
        fresh.hnsw.efSearch, fresh.hnsw.efConstruction = inner.hnsw.efSearch, 80
        index = faiss.IndexIDMap2(fresh)
        if keep.any():
            index.add_with_ids(np.ascontiguousarray(vecs[keep], np.float32), keep_ids[keep])
        self._set_index(index)
        return int((~keep).sum())

    def iter_vectors(self, ids: np.ndarray | None = None, *, chunk: int = CHUNK,
                     stored: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) of everything stored (or of `ids`, in that order), `chunk` at a time. Vectors are float32
        unit rows; with `stored`, as the index holds them where it holds floats (float16 for ivf-fp16), not
        renormalised. Quantised codes (SQ8, PQ) are decoded either way."""
        if not isinstance(chunk, int) or chunk < 1:
            raise UsageError(f"chunk must be a positive integer, got {chunk!r}")
        flat = ids is None and self.ivf is None  # stored in id-map order: read by position
        ids = self.ids() if ids is None else _check_ids(ids)
        half = stored and (self.kind == "ivf-fp16" or self.exact is not None)
        for s in range(0, ids.size, chunk):
            part = ids[s:s + chunk]
            if self.exact is not None:
                vecs = self.exact.rows(part)
            elif flat:
                vecs = self.index.index.reconstruct_n(s, part.size)
            else:  # by id: IVF's direct map, or the id map's reverse map
                vecs = self.index.reconstruct_batch(part)
            yield part, (vecs.astype(np.float16) if half else vecs if stored else unit_rows(vecs))

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of everything stored, at once: float32 as stored (decoded, for quantised types)."""
        parts = list(self.iter_vectors(stored=True))
        if not parts:
            return np.empty(0, np.int64), np.empty((0, self.dim), np.float32)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]).astype(np.float32)

    def _upper_id(self) -> int:
        """An upper bound of the stored ids (-1 when empty), computed once, then kept by add."""
        if self._max_id is None:
            stored = self.ids()
            self._max_id = int(stored.max()) if stored.size else -1
        return self._max_id

    def ids(self) -> np.ndarray:
        ivf = self.ivf
        if ivf is None:
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        lists = ivf.invlists
        parts = [faiss.rev_swig_ptr(lists.get_ids(i), n).copy()
                 for i in range(ivf.nlist) if (n := lists.list_size(i))]
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        vecs = _check_vectors(vecs, self.dim)
        ids = _check_ids(ids)
        if ids.size != vecs.shape[0]:
            raise UsageError(f"{ids.size} ids for {vecs.shape[0]} vectors")
        if ids.size == 0:
            return
        if np.unique(ids).size != ids.size:
            raise UsageError("duplicate ids in one add")
        # Catalog ids only grow (never reused), so new ids lie above every stored one and the check costs
        # O(added), not O(stored); anything else gets the full check.
        if int(ids.min()) <= self._upper_id():
            present = np.isin(ids, self.ids())
            if present.any():
                raise UsageError(f"ids already in the index: {ids[present][:5].tolist()}")
        self.index.add_with_ids(vecs, ids)
        if self.exact is not None:
            self.exact.add(ids, vecs)
        self._max_id = max(self._max_id, int(ids.max()))
        self._version += 1
        self._journal(added=(ids, vecs))

    def remove(self, ids: np.ndarray) -> int:
        ids = _check_ids(ids)
        if ids.size == 0:
            return 0
        if self.kind == "hnsw":
            return self._rebuild_hnsw_without(ids)  # a new graph: the next write is a whole index
        n = self._remove(ids)
        self._journal(removed=ids)
        return n

    def _remove(self, ids: np.ndarray) -> int:
        self._version += 1
        if self.exact is not None:
            self.exact.forget(ids)
        if self.kind == "hnsw":
            return self._rebuild_hnsw_without(ids)
        if self.ivf is not None:  # hash-table direct map: O(removed); it takes an array selector only
            return int(self.index.remove_ids(faiss.IDSelectorArray(ids.size, faiss.swig_ptr(ids))))
        return int(self.index.remove_ids(faiss.IDSelectorBatch(ids.size, faiss.swig_ptr(ids))))

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        ids = _check_ids(ids)
        if not ids.size:
            return np.empty((0, self.dim), np.float32)
        if self.exact is not None:
            return self.exact.rows(ids)
        return np.stack([self.index.reconstruct(int(i)) for i in ids])

    def _params(self, allowed_share: float = 1.0) -> faiss.SearchParameters:
        """Search parameters of this index type (a selector is added per search). A filter that lets
        through a share f of the vectors widens the search by 1/f, so that about as many allowed
        vectors are compared as without it (else a selective filter returns too few hits)."""
        widen = 1.0 / max(allowed_share, 1e-9)
        inner = self._inner
        if isinstance(inner, faiss.IndexHNSW):
            return faiss.SearchParametersHNSW(efSearch=int(min(max(inner.hnsw.efSearch, 16) * widen, 1 << 16)))
        ivf = self.ivf
        if ivf is not None:
            return faiss.SearchParametersIVF(nprobe=int(min(ivf.nlist, np.ceil(ivf.nprobe * widen))))
        return faiss.SearchParameters()

    def search(self, queries: np.ndarray, k: int,
               allowed: np.ndarray | IdFilter | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` by inner product; `allowed` (ids or an `IdFilter`) restricts the results. Missing slots: id -1.
        A lossy index with exact rows fetches more candidates and returns their exact scores."""
        _check_k(k)
        queries = _check_vectors(np.atleast_2d(queries), self.dim)
        if self.exact is None:
            return self._search(queries, k, allowed)
        _, cand = self._search(queries, self.exact.candidates(k, self.ntotal), allowed)
        return self.exact.rescore(queries, cand, k)

    def _search(self, queries: np.ndarray, k: int,
                allowed: np.ndarray | IdFilter | None) -> tuple[np.ndarray, np.ndarray]:
        if allowed is None:
            with _threads_for(queries.shape[0]):
                return self.index.search(queries, k, params=self._params())
        filt = allowed if isinstance(allowed, IdFilter) else IdFilter(allowed)
        nq = queries.shape[0]
        if filt.empty:
            return np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64)
        share = min(1.0, filt.ids.size / max(self.ntotal, 1))
        if self.kind != "flat" and share < POST_FILTER_SHARE and filt.ids.size * self.dim <= EXACT_FILTER_FLOATS:
            return self._exact(queries, k, filt)
        if share >= POST_FILTER_SHARE and self.kind.startswith("ivf"):
            # Most items pass: search unfiltered for a few more and drop the rest afterwards. faiss's
            # per-vector selector check made a 1 M IVF search 1.6x slower than this. (Flat search is
            # the other way round: with a selector it was 2-3x faster than without, at 10 k and 100 k.)
            got = self._post_filtered(queries, k, filt, share)
            if got is not None:
                return got
        params = self._params(share)
        sel = faiss.IDSelectorBitmap(filt.n, faiss.swig_ptr(filt.bits))
        params.sel = sel
        with _threads_for(nq):
            return self.index.search(queries, k, params=params)  # `sel`/`bits` stay alive until here

    def range_search(self, queries: np.ndarray, radius: float, allowed: np.ndarray | IdFilter | None = None,
                     nprobe: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every stored vector with an inner product of at least `radius` with each query (among `allowed`), as
        (ids, scores) per query, best first. IVF types look only in the lists a search probes, as `search` does
        (`nprobe`: that many instead, where a close radius needs fewer); where faiss has no range search for the
        type (HNSW), a top-k search widened until the k-th falls below `radius` stands in."""
        queries = _check_vectors(np.atleast_2d(queries), self.dim)
        filt = None if allowed is None else allowed if isinstance(allowed, IdFilter) else IdFilter(allowed)
        if filt is not None and filt.empty:
            return [(np.empty(0, np.int64), np.empty(0, np.float32)) for _ in range(queries.shape[0])]
        params = self._params()
        if nprobe is not None and isinstance(params, faiss.SearchParametersIVF):
            params.nprobe = int(max(1, min(nprobe, self.ivf.nlist)))
        sel = None
        if filt is not None:
            sel = faiss.IDSelectorBitmap(filt.n, faiss.swig_ptr(filt.bits))
            params.sel = sel
        slack = RANGE_SLACK if self.exact is not None else 0.0
        try:
            with _threads_for(queries.shape[0]):
                lims, scores, ids = self.index.range_search(queries, float(radius) - slack, params=params)
        except RuntimeError:  # not implemented for this type
            return self._range_by_topk(queries, float(radius), filt)
        out = []
        for q in range(queries.shape[0]):
            s, i = scores[lims[q]:lims[q + 1]], ids[lims[q]:lims[q + 1]]
            if self.exact is not None and i.size:
                i = i.astype(np.int64)
                s = (self.exact.rows(i) @ queries[q]).astype(np.float32)
                keep = s >= radius
                s, i = s[keep], i[keep]
            order = np.lexsort((i, -s))
            out.append((i[order].astype(np.int64), s[order].astype(np.float32)))
        return out

    def _range_by_topk(self, queries: np.ndarray, radius: float,
                       filt: IdFilter | None) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for q in queries:
            k = 16
            while True:
                s, i = self.search(q[None], min(k, max(self.ntotal, 1)), filt)
                s, i = s[0], i[0]
                keep = (i >= 0) & (s >= radius)
                if not keep.all() or k >= self.ntotal:
                    out.append((i[keep], s[keep]))
                    break
                k *= 4
        return out

    def _exact(self, queries: np.ndarray, k: int, filt: IdFilter) -> tuple[np.ndarray, np.ndarray]:
        """Brute force over the filter's vectors (fetched once per state of the index); ties by id, as faiss."""
        state = (id(self.index), self._version)
        if filt._vectors is None or filt._vectors[0] != state:
            present = filt.ids[np.isin(filt.ids, self.ids())]  # the catalog may name ids not stored (yet)
            filt._vectors = (state, present, self._stored_rows(present) if present.size
                             else np.empty((0, self.dim), np.float32))
        _, ids, vecs = filt._vectors
        kk = min(k, ids.size)
        out_s = np.full((queries.shape[0], k), -np.inf, np.float32)
        out_i = np.full((queries.shape[0], k), -1, np.int64)
        if kk and queries.shape[0] > FEW_QUERIES:
            # A batch (the relevance profile's thousands of probes) through faiss's blocked search: numpy's
            # argpartition over 2,048 queries x 33 k rows took 11 s on 2 cores, faiss 0.15 s.
            with _threads_for(queries.shape[0]):
                top_s, top = faiss.knn(queries, vecs, kk, metric=faiss.METRIC_INNER_PRODUCT)
            for row in range(queries.shape[0]):
                order = np.lexsort((ids[top[row]], -top_s[row]))
                out_s[row, :kk] = top_s[row, order]
                out_i[row, :kk] = ids[top[row, order]]
        elif kk:
            sims = matvec(vecs, queries).T
            top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk] if kk < ids.size else \
                np.broadcast_to(np.arange(ids.size), (queries.shape[0], ids.size))
            for row in range(queries.shape[0]):
                cand = top[row]
                order = cand[np.lexsort((ids[cand], -sims[row, cand]))]
                out_s[row, :kk] = sims[row, order]
                out_i[row, :kk] = ids[order]
        return out_s, out_i

    def _stored_rows(self, ids: np.ndarray) -> np.ndarray:
        return self.exact.rows(ids) if self.exact is not None else self.index.reconstruct_batch(ids)

    def _post_filtered(self, queries: np.ndarray, k: int, filt: IdFilter,
                       share: float) -> tuple[np.ndarray, np.ndarray] | None:
        """Unfiltered search for ~2k/share hits, then the allowed ones; None when too few pass."""
        fetch = min(max(self.ntotal, 1), int(np.ceil(2 * k / share)) + 8)
        with _threads_for(queries.shape[0]):
            scores, ids = self.index.search(queries, fetch, params=self._params())
        safe = np.where(ids >= 0, ids, 0)
        byte = safe >> 3
        ok = (ids >= 0) & (byte < filt.n)
        ok[ok] = ((filt.bits[byte[ok]] >> (safe[ok] & 7)) & 1).astype(bool)
        out_s = np.full((len(ids), k), -np.inf, np.float32)
        out_i = np.full((len(ids), k), -1, np.int64)
        for row in range(len(ids)):
            keep = np.flatnonzero(ok[row])[:k]
            if keep.size < min(k, filt.ids.size):
                return None  # unlucky: fewer allowed hits than asked for; search with the selector
            out_s[row, :keep.size] = scores[row, keep]
            out_i[row, :keep.size] = ids[row, keep]
        return out_s, out_i


@contextmanager
def _threads_for(nq: int):
    """faiss on one thread for a few queries (see FEW_QUERIES); the caller's thread count is restored."""
    prev = faiss.omp_get_max_threads()
    if nq > FEW_QUERIES or prev <= 1:
        yield
        return
    faiss.omp_set_num_threads(1)  # per calling thread: other threads (a server's) keep theirs
    try:
        yield
    finally:
        faiss.omp_set_num_threads(prev)


def matvec(rows: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """rows @ queries.T, on the calling thread for a few queries: numpy's BLAS threads, woken right after a
    torch op, waited for torch's spinning workers (a 1,024 x 512 product took 2-3 ms instead of 0.05)."""
    queries = np.atleast_2d(queries)
    if queries.shape[0] > FEW_QUERIES:
        return rows @ queries.T
    return np.einsum("ij,qj->iq", rows, queries)
