"""The parts of the one encoder contract that need no torch: argument checks and unit rows in numpy.

Encoders built on torch (`base.Encoder`) and the towers a one-off query reads back from their ONNX exports
(`exported_text`) keep the same contract from here: a list in, L2-normalised float32 ``[N, D]`` out, in order.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import UsageError

# Dynamic int8 runs items faster one per core (each alone on its own thread, the plain graph's fused kernels)
# than in batches over every core once an item has this many tokens; below it the weights are most of an
# item's work, and a batch shares them. ViT-B-32's int8 towers on 2 Zen 4 cores, items/s one per core
# against batches of 32 over both: texts of 8 tokens 408 vs 702, 40: 157 vs 150, 48: 129 vs 119, 64: 101 vs
# 72, 77: 80 vs 55; images (50 tokens) 61.5 vs 59.7, and decoding then runs beside them (`ingest.embed`).
PER_CORE_MIN_TOKENS = 48


def check_args(who: str, inputs: Sequence[Any], batch_size: int) -> None:
    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
        raise UsageError(f"{who}.encode takes a list of inputs, got {type(inputs).__name__}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise UsageError(f"batch_size must be a positive integer, got {batch_size!r}")


def unit_rows(emb: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, as float32; non-finite values are an error, never a vector."""
    v = emb.astype(np.float32, copy=False)
    v = v / np.maximum(np.sqrt(np.einsum("ij,ij->i", v, v))[:, None], 1e-12)
    if not np.isfinite(v).all():
        raise FloatingPointError("encoder produced non-finite values")
    return v
