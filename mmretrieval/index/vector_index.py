"""The one FAISS index: every modality's vectors, ids = catalog item ids, inner product on unit vectors."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import faiss
import numpy as np

from ..errors import MMRError, UsageError

NORM_TOLERANCE = 1e-3


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


class VectorIndex:
    """`faiss.IndexIDMap2` over an inner-product index; exact (`IndexFlatIP`) by default."""

    FILE = "vectors.faiss"

    def __init__(self, index: faiss.Index) -> None:
        if not isinstance(index, faiss.IndexIDMap2):
            index = faiss.IndexIDMap2(index)
        if index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise MMRError("the index metric is not inner product; it was not built by mmretrieval for cosine")
        self.index = index

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
        inner = faiss.downcast_index(self.index.index)
        return type(inner).__name__

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
        present = np.isin(ids, self.ids())
        if present.any():
            raise UsageError(f"ids already in the index: {ids[present][:5].tolist()}")
        self.index.add_with_ids(vecs, ids)

    def remove(self, ids: np.ndarray) -> int:
        ids = _check_ids(ids)
        if ids.size == 0:
            return 0
        return int(self.index.remove_ids(faiss.IDSelectorBatch(ids.size, faiss.swig_ptr(ids))))

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        ids = _check_ids(ids)
        return np.stack([self.index.reconstruct(int(i)) for i in ids]) if ids.size else np.empty((0, self.dim), np.float32)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-`k` by inner product; `allowed` restricts results to those ids. Missing slots have id -1."""
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise UsageError(f"k must be a positive integer, got {k!r}")
        queries = _check_vectors(np.atleast_2d(queries), self.dim)
        params = None
        if allowed is not None:
            allowed = _check_ids(allowed)
            if allowed.size == 0:
                q = queries.shape[0]
                return np.full((q, k), -np.inf, np.float32), np.full((q, k), -1, np.int64)
            n, bits = id_bitmap(allowed)
            sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))
            params = faiss.SearchParameters(sel=sel)
        scores, ids = self.index.search(queries, k, params=params)  # `sel`/`bits` stay alive until here
        return scores, ids
