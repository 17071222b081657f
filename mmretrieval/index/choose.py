"""Which FAISS index fits a collection: a pure function of (count, dim, memory budget), as autofaiss does.

- small collections: exact `Flat` (inner product);
- larger ones: `IVF,SQfp16` (each vector in half precision inside the probed lists: scores within ~1e-5 of
  exact, half the memory of `IVF,Flat` and a 1 M-item query scans half the bytes, 2.5x faster measured; supports
  removal, which an incrementally indexed library needs). `ivf-flat` (float32 lists) stays on request;
- under a memory budget: `IVF,SQ8` (1 byte a dimension), then `IVF,PQ` with as many sub-quantisers as fit; both
  keep float16 rows on disk beside them (2 bytes a dimension, read where a query needs them: not in the budget) and re-score their
  candidates with them (`exact_rows.py`);
- `hnsw` on request: the fastest queries, but each removal rebuilds the graph.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UsageError

KINDS = ("flat", "hnsw", "ivf-fp16", "ivf-flat", "ivf-sq8", "ivf-pq")
FLAT_UP_TO = 50_000
# Per vector for its id: the int64 in the index and the id -> position hash table (about 40 bytes measured by
# scripts/bench/scale_plan.py; 16 had been assumed, and 100 M vectors overshot a budget by 3 GB).
ID_BYTES = 48


@dataclass(frozen=True)
class IndexChoice:
    kind: str
    factory: str          # faiss.index_factory string (inner product)
    nlist: int = 0
    pq_m: int = 0
    nprobe: int = 0       # IVF lists searched per query
    ef_search: int = 0    # HNSW beam width
    est_bytes: int = 0

    @property
    def needs_training(self) -> bool:
        return self.kind.startswith("ivf")

    @property
    def min_train(self) -> int:
        """Vectors needed to train it: one per list, and PQ's 256 codewords per sub-quantiser."""
        if not self.needs_training:
            return 0
        return max(self.nlist, 256) if self.kind == "ivf-pq" else max(self.nlist, 1)


def nlist_for(n: int) -> int:
    """About 4·√n lists, a power of two, with at least ~39 training points per list."""
    target = 4 * math.sqrt(max(n, 1))
    nl = 2 ** max(0, round(math.log2(target)))
    while nl > 1 and n < 39 * nl:
        nl //= 2
    return max(1, nl)


def estimate_bytes(kind: str, n: int, dim: int, pq_m: int = 0) -> int:
    per = {"flat": 4 * dim, "ivf-flat": 4 * dim, "ivf-fp16": 2 * dim, "ivf-sq8": dim, "ivf-pq": pq_m,
           "hnsw": 4 * dim + 32 * 2 * 4 + 8}[kind]
    return int(n * (per + ID_BYTES))


def _pq_m(n: int, dim: int, budget: int | None) -> int:
    options = [m for m in (256, 128, 96, 64, 48, 32, 16, 8) if m <= dim and dim % m == 0]
    for m in options:
        if budget is None or estimate_bytes("ivf-pq", n, dim, m) <= budget:
            return m
    smallest = estimate_bytes("ivf-pq", n, dim, options[-1])
    raise UsageError(f"the memory budget of {_human(budget or 0)} is too small for {n:,} vectors of {dim} dims: the "
                     f"smallest index (IVF-PQ{options[-1]}) needs about {_human(smallest)}; give a larger "
                     f"--memory-budget")


def _human(n: int) -> str:
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n} bytes"


def choose_index(n: int, dim: int, memory_budget: int | None = None, kind: str | None = None) -> IndexChoice:
    if n < 0 or dim < 1:
        raise UsageError("n must be >= 0 and dim >= 1")
    if kind is not None and kind not in KINDS:
        raise UsageError(f"unknown index type {kind!r}; valid: {', '.join(KINDS)}")
    fits = lambda k, m=0: memory_budget is None or estimate_bytes(k, n, dim, m) <= memory_budget  # noqa: E731
    if kind is None:
        if n < FLAT_UP_TO and fits("flat"):
            kind = "flat"
        elif fits("ivf-fp16"):  # also below FLAT_UP_TO where flat does not fit the budget
            kind = "ivf-fp16"
        elif fits("ivf-sq8"):
            kind = "ivf-sq8"
        else:
            kind = "ivf-pq"
    if kind == "flat":
        return IndexChoice("flat", "Flat", est_bytes=estimate_bytes("flat", n, dim))
    if kind == "hnsw":
        return IndexChoice("hnsw", "HNSW32,Flat", ef_search=128, est_bytes=estimate_bytes("hnsw", n, dim))
    nl = nlist_for(n)
    nprobe = min(nl, max(8, nl // 64))  # a floor: conversion tunes it up to the recall target (vector_index)
    if kind == "ivf-flat":
        return IndexChoice(kind, f"IVF{nl},Flat", nlist=nl, nprobe=nprobe, est_bytes=estimate_bytes(kind, n, dim))
    if kind == "ivf-fp16":
        return IndexChoice(kind, f"IVF{nl},SQfp16", nlist=nl, nprobe=nprobe, est_bytes=estimate_bytes(kind, n, dim))
    if kind == "ivf-sq8":
        return IndexChoice(kind, f"IVF{nl},SQ8", nlist=nl, nprobe=nprobe, est_bytes=estimate_bytes(kind, n, dim))
    m = _pq_m(n, dim, memory_budget)
    # "np": no polysemous training. It reorders codes for Hamming-filtered search, which is never used here, and
    # took 90 % of the training time (15.3 s of IVF64,PQ8 on 10 k vectors; 1.6 s without).
    return IndexChoice(kind, f"IVF{nl},PQ{m}np", nlist=nl, pq_m=m, nprobe=nprobe,
                       est_bytes=estimate_bytes(kind, n, dim, m))


def parse_bytes(text: str) -> int:
    """'600M', '1.5G', '500000' -> bytes."""
    t = text.strip().upper().removesuffix("B")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    num = t[:-1] if t[-1:] in "KMG" else t
    try:
        return int(float(num) * mult)
    except ValueError:
        raise UsageError(f"not a size: {text!r} (use e.g. 600M or 2G)") from None
