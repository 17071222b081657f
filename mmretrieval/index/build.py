"""One IVF index from many parts (a collection's chunks, or shards embedded elsewhere).

Train once on a sample drawn at random across all parts (training on the first rows, as autofaiss does, is
biased when files are sorted by path), fill one copy of the trained, empty index per part (in threads: faiss
releases the GIL while it adds), then merge the copies' inverted lists into one. The lists hold the catalog
ids themselves, so they survive the merge; an `IndexIDMap2` over IVF would not (each copy numbers its
vectors from 0). Finally nprobe is tuned to the recall target against exact search.
"""
from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np

from .vector_index import VectorIndex, _check_vectors

TRAIN_PER_LIST = 48      # training points per IVF list
TRAIN_MIN = 10_000


def sample_rows(sizes: Sequence[int], n: int, seed: int = 0) -> list[np.ndarray]:
    """`n` distinct rows drawn uniformly across parts of these sizes: sorted row numbers per part."""
    total = int(sum(sizes))
    pick = np.sort(np.random.default_rng(seed).choice(total, min(n, total), replace=False))
    bounds = np.cumsum([0, *sizes])
    return [pick[(pick >= lo) & (pick < hi)] - lo for lo, hi in zip(bounds[:-1], bounds[1:])]


def build_ivf(parts: Sequence[tuple[np.ndarray, np.ndarray]], choice, dim: int, *, workers: int = 2,
              seed: int = 0, tune_with: tuple[np.ndarray, np.ndarray] | None = None) -> VectorIndex:
    """An IVF index (`choice` from `choose_index`) holding every part's (ids, vectors); vectors may be memory-
    mapped arrays (only the sampled rows and one part at a time are read). `tune_with`: all (ids, vectors),
    to tune nprobe against exact search over them (left at the choice's floor without it)."""
    sizes = [len(ids) for ids, _ in parts]
    rows = sample_rows(sizes, max(TRAIN_PER_LIST * max(choice.nlist, 1), TRAIN_MIN), seed)
    train = np.concatenate([np.asarray(v[r], np.float32) for (_, v), r in zip(parts, rows)])
    empty = VectorIndex.build(choice, dim, train).index
    empty.set_direct_map_type(faiss.DirectMap.NoMap)  # merging needs plain lists; the map is rebuilt after

    def fill(part: tuple[np.ndarray, np.ndarray]) -> faiss.Index:
        ids, vecs = part
        index = faiss.clone_index(empty)
        for start in range(0, len(ids), 100_000):
            index.add_with_ids(_check_vectors(vecs[start:start + 100_000], dim),
                               np.ascontiguousarray(ids[start:start + 100_000], np.int64))
        return index

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        filled = list(pool.map(fill, parts))
    merged = filled[0] if filled else faiss.clone_index(empty)
    for other in filled[1:]:
        merged.merge_from(other, 0)
    out = VectorIndex(merged)
    if tune_with is not None and merged.ntotal:
        out.tune_nprobe(*tune_with, floor=choice.nprobe)
    return out
