"""Reading the stored vectors back: one normalisation, and a chunked stream for whoever reads them all
(export, audits, collection views) without decoding the whole index into memory at once."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK = 65_536  # vectors per chunk: 128 MB of fp32 at 512 dims


def unit_rows(x: np.ndarray) -> np.ndarray:
    """float32 rows scaled to unit length (a zero row stays zero). Vectors read back from a quantised index
    (fp16, SQ8, PQ codes) drift off the unit sphere; cosine is the inner product only on it."""
    x = np.asarray(x, np.float32)
    if x.ndim == 1:
        return unit_rows(x[None, :])[0]
    return x / np.maximum(np.sqrt(np.einsum("ij,ij->i", x, x))[:, None], 1e-12)


@dataclass(frozen=True)
class VectorChunk:
    """Consecutive stored vectors: their item ids, each item's modality, and the vectors (row i is ids[i]'s)."""

    ids: np.ndarray          # int64 [n]
    modalities: np.ndarray   # str [n]
    vectors: np.ndarray      # [n, dim]: float32 unit rows, or float16 as an ivf-fp16 index stores them

    def __len__(self) -> int:
        return int(self.ids.size)
