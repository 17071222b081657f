"""The one FAISS index: every modality's vectors, ids = catalog item ids, inner product on unit vectors."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch  # noqa: F401  (must be loaded before faiss, see below)
import faiss  # noqa: E402

# torch and faiss each bundle an OpenMP runtime. With faiss's loaded first, a process that alternates
# the two (encode a query, search, encode the next...) ran the ViT-B-32 text tower at 18 ms per query
# instead of 11 ms on 2 cores: the runtimes' threads fight over the cores. Loading torch first avoids it.

from ..errors import MMRError, UsageError

NORM_TOLERANCE = 1e-3
TUNE_RECALL = 0.98
POST_FILTER_SHARE = 0.5  # a filter letting through at least this share of the items is applied after search  # recall@10 against exact search that an approximate index is tuned to


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
    """A set of allowed ids as the packed bitmap faiss reads; build once, search with it many times."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = _check_ids(ids)
        self.n, self.bits = id_bitmap(self.ids) if self.ids.size else (0, np.zeros(1, np.uint8))

    @property
    def empty(self) -> bool:
        return self.ids.size == 0


class VectorIndex:
    """`faiss.IndexIDMap2` over an inner-product index; exact (`IndexFlatIP`) by default."""

    FILE = "vectors.faiss"

    def __init__(self, index: faiss.Index) -> None:
        if not isinstance(index, faiss.IndexIDMap2):
            index = faiss.IndexIDMap2(index)
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise MMRError("the index metric is not inner product; it was not built by mmretrieval for cosine")
        self._set_index(index)

    def _set_index(self, index: faiss.IndexIDMap2) -> None:
        ivf = faiss.try_extract_index_ivf(faiss.downcast_index(index.index))
        if ivf is not None:
            # One query at a time is the engine's case: split its probed lists over the threads (mode 1)
            # rather than parallelising over queries (mode 0, one thread for one query). 1 M x 512,
            # nprobe 80, filtered: 4.1 -> 2.3 ms on 2 cores.
            ivf.parallel_mode = 1
        self.index = index
        self._max_id: int | None = None  # an upper bound of the stored ids, computed once when needed

    @classmethod
    def create(cls, dim: int) -> "VectorIndex":
        if not isinstance(dim, int) or dim < 1:
            raise UsageError(f"dim must be a positive integer, got {dim!r}")
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "VectorIndex":
        try:
            index = faiss.read_index(os.fspath(path))
        except RuntimeError as e:
            raise MMRError(f"cannot read vector index {path}: {str(e).splitlines()[0]}") from None
        return cls(faiss.downcast_index(index) if not isinstance(index, faiss.IndexIDMap2) else index)

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically: a temp file in the same folder, fsync, then rename over the old one."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            faiss.write_index(self.index, tmp)
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

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def kind(self) -> str:
        """flat, hnsw, ivf-flat, ivf-sq8 or ivf-pq (see `choose.py`)."""
        inner = faiss.downcast_index(self.index.index)
        if isinstance(inner, faiss.IndexHNSW):
            return "hnsw"
        if isinstance(inner, faiss.IndexIVF):
            return {"IndexIVFFlat": "ivf-flat", "IndexIVFScalarQuantizer": "ivf-sq8"}.get(type(inner).__name__, "ivf-pq")
        return "flat"

    @property
    def description(self) -> str:
        inner = faiss.downcast_index(self.index.index)
        if isinstance(inner, faiss.IndexIVF):
            return f"{self.kind} (nlist {inner.nlist}, nprobe {inner.nprobe})"
        if isinstance(inner, faiss.IndexHNSW):
            return f"hnsw (M 32, efSearch {inner.hnsw.efSearch})"
        return "flat (exact)"

    @classmethod
    def build(cls, choice, dim: int, train: np.ndarray | None = None) -> "VectorIndex":
        """An empty index of the chosen type; IVF types are trained on `train` (representative vectors)."""
        inner = faiss.index_factory(dim, choice.factory, faiss.METRIC_INNER_PRODUCT)
        if choice.needs_training:
            if train is None or train.shape[0] < choice.nlist:
                raise UsageError(f"{choice.kind} needs at least {choice.nlist} vectors to train on")
            inner.train(_check_vectors(train, dim))
            ivf = faiss.extract_index_ivf(inner)
            ivf.nprobe = choice.nprobe
            ivf.make_direct_map()  # reconstruct by id (copies, conversion) keeps working
        if choice.kind == "hnsw":
            inner.hnsw.efSearch = choice.ef_search
            inner.hnsw.efConstruction = 80
        return cls(faiss.IndexIDMap2(inner))

    def _rebuild_without(self, ids: np.ndarray) -> int:
        """HNSW cannot delete from its graph, and IVF under an id map cannot renumber: rebuild the
        structure (the trained quantiser is kept) from the vectors that stay."""
        keep_ids, vecs = self.all_vectors()
        keep = ~np.isin(keep_ids, ids)
        if keep.all():
            return 0
        inner = faiss.downcast_index(self.index.index)
        if isinstance(inner, faiss.IndexHNSW):
            fresh = faiss.index_factory(self.dim, "HNSW32,Flat", faiss.METRIC_INNER_PRODUCT)
            fresh.hnsw.efSearch, fresh.hnsw.efConstruction = inner.hnsw.efSearch, 80
        else:
            fresh = faiss.clone_index(inner)
            ivf = faiss.extract_index_ivf(fresh)
            ivf.set_direct_map_type(faiss.DirectMap.NoMap)
            fresh.reset()
        index = faiss.IndexIDMap2(fresh)
        if keep.any():
            index.add_with_ids(np.ascontiguousarray(vecs[keep], np.float32), keep_ids[keep])
        ivf = faiss.try_extract_index_ivf(fresh)
        if ivf is not None:
            ivf.make_direct_map()
        self._set_index(index)
        return int((~keep).sum())

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of everything stored, in storage order (exact for flat and HNSW)."""
        n = self.ntotal
        if n == 0:
            return np.empty(0, np.int64), np.empty((0, self.dim), np.float32)
        return self.ids(), self.index.index.reconstruct_n(0, n)

    def convert(self, choice) -> "VectorIndex":
        """The same ids and vectors in an index of another type: nothing is re-embedded."""
        ids, vecs = self.all_vectors()
        vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)  # quantised types drift
        rng = np.random.default_rng(0)
        train = vecs[rng.choice(len(vecs), min(len(vecs), max(48 * max(choice.nlist, 1), 10_000)), replace=False)] \
            if choice.needs_training else None
        new = VectorIndex.build(choice, self.dim, train)
        for start in range(0, len(ids), 100_000):
            new.index.add_with_ids(np.ascontiguousarray(vecs[start:start + 100_000], np.float32), ids[start:start + 100_000])
        if choice.needs_training:
            new.tune_nprobe(ids, vecs, floor=choice.nprobe)
        return new

    def tune_nprobe(self, ids: np.ndarray, vecs: np.ndarray, *, target: float = TUNE_RECALL, k: int = 10,
                    queries: int = 256, floor: int = 1) -> float:
        """Set an IVF index's nprobe to the smallest power of two (not below `floor`) whose recall@k
        against exact search reaches `target`, measured on stored vectors used as queries (each one's
        own id left out of both answers), as autofaiss tunes its search parameters. Returns the recall."""
        ivf = faiss.try_extract_index_ivf(faiss.downcast_index(self.index.index))
        if ivf is None or len(ids) <= k + 1:
            return 1.0
        rng = np.random.default_rng(0)
        pick = rng.choice(len(ids), min(queries, len(ids)), replace=False)
        q = np.ascontiguousarray(vecs[pick], np.float32)
        _, truth_rows = faiss.knn(q, np.ascontiguousarray(vecs, np.float32), k + 1, metric=faiss.METRIC_INNER_PRODUCT)
        truth = [set(ids[r[r >= 0]].tolist()) - {int(ids[p])} for r, p in zip(truth_rows, pick)]
        def recall_at(nprobe: int) -> float:
            _, got = self.index.search(q, k + 1, params=faiss.SearchParametersIVF(nprobe=nprobe))
            return float(np.mean([len(t & (set(g.tolist()) - {int(ids[p])})) / max(len(t), 1)
                                  for t, g, p in zip(truth, got, pick)]))

        # A quantised index (SQ8, PQ) may never reach the target: stop where probing more stops paying.
        nprobe, recall = 1, recall_at(1)
        while nprobe < ivf.nlist and (recall < target or nprobe < floor):
            more = min(2 * nprobe, ivf.nlist)
            better = recall_at(more)
            if recall >= target - 0.05 and better - recall < 0.002 and nprobe >= floor:
                break
            nprobe, recall = more, better
        ivf.nprobe = nprobe
        return recall

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        vecs = _check_vectors(vecs, self.dim)
        ids = _check_ids(ids)
        if ids.size != vecs.shape[0]:
            raise UsageError(f"{ids.size} ids for {vecs.shape[0]} vectors")
        if ids.size == 0:
            return
        if np.unique(ids).size != ids.size:
            raise UsageError("duplicate ids in one add")
        if self._max_id is None:
            stored = self.ids()
            self._max_id = int(stored.max()) if stored.size else -1
        # Catalog ids only grow (never reused), so new ids lie above every stored one and the check costs
        # O(added), not O(stored); anything else gets the full check.
        if int(ids.min()) <= self._max_id:
            present = np.isin(ids, self.ids())
            if present.any():
                raise UsageError(f"ids already in the index: {ids[present][:5].tolist()}")
        self.index.add_with_ids(vecs, ids)
        self._max_id = max(self._max_id, int(ids.max()))

    def remove(self, ids: np.ndarray) -> int:
        ids = _check_ids(ids)
        if ids.size == 0:
            return 0
        if self.kind != "flat":
            return self._rebuild_without(ids)
        return int(self.index.remove_ids(faiss.IDSelectorBatch(ids.size, faiss.swig_ptr(ids))))

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        ids = _check_ids(ids)
        return np.stack([self.index.reconstruct(int(i)) for i in ids]) if ids.size else np.empty((0, self.dim), np.float32)

    def _params(self, allowed_share: float = 1.0) -> faiss.SearchParameters:
        """Search parameters of this index type (a selector is added per search). A filter that lets
        through a share f of the vectors widens the search by 1/f, so that about as many allowed
        vectors are compared as without it (else a selective filter returns too few hits)."""
        widen = 1.0 / max(allowed_share, 1e-9)
        inner = faiss.downcast_index(self.index.index)
        if isinstance(inner, faiss.IndexHNSW):
            return faiss.SearchParametersHNSW(efSearch=int(min(max(inner.hnsw.efSearch, 16) * widen, 1 << 16)))
        ivf = faiss.try_extract_index_ivf(inner)
        if ivf is not None:
            return faiss.SearchParametersIVF(nprobe=int(min(ivf.nlist, np.ceil(ivf.nprobe * widen))))
        return faiss.SearchParameters()

    def search(self, queries: np.ndarray, k: int,
               allowed: np.ndarray | IdFilter | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` by inner product; `allowed` (ids or an `IdFilter`) restricts the results. Missing slots: id -1."""
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise UsageError(f"k must be a positive integer, got {k!r}")
        queries = _check_vectors(np.atleast_2d(queries), self.dim)
        if allowed is None:
            return self.index.search(queries, k, params=self._params())
        filt = allowed if isinstance(allowed, IdFilter) else IdFilter(allowed)
        nq = queries.shape[0]
        if filt.empty:
            return np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64)
        share = min(1.0, filt.ids.size / max(self.ntotal, 1))
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
        return self.index.search(queries, k, params=params)  # `sel`/`bits` stay alive until here

    def _post_filtered(self, queries: np.ndarray, k: int, filt: IdFilter,
                       share: float) -> tuple[np.ndarray, np.ndarray] | None:
        """Unfiltered search for ~2k/share hits, then the allowed ones; None when too few pass."""
        fetch = min(max(self.ntotal, 1), int(np.ceil(2 * k / share)) + 8)
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
