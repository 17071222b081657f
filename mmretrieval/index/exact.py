"""A numpy brute-force reference with the same contract as `VectorIndex.search`, for tests."""
from __future__ import annotations

import numpy as np


class ExactIndex:
    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._ids = np.empty(0, np.int64)
        self._vecs = np.empty((0, dim), np.float32)

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        self._ids = np.concatenate([self._ids, np.asarray(ids, np.int64)])
        self._vecs = np.concatenate([self._vecs, np.asarray(vecs, np.float32)])

    def remove(self, ids: np.ndarray) -> int:
        keep = ~np.isin(self._ids, ids)
        n = int((~keep).sum())
        self._ids, self._vecs = self._ids[keep], self._vecs[keep]
        return n

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        ids, vecs = self._ids, self._vecs
        if allowed is not None:
            m = np.isin(ids, allowed)
            ids, vecs = ids[m], vecs[m]
        sims = queries.astype(np.float64) @ vecs.astype(np.float64).T
        out_s = np.full((queries.shape[0], k), -np.inf, np.float32)
        out_i = np.full((queries.shape[0], k), -1, np.int64)
        for q in range(queries.shape[0]):
            order = np.lexsort((ids, -sims[q]))[:k]
            out_s[q, :order.size] = sims[q, order]
            out_i[q, :order.size] = ids[order]
        return out_s, out_i
