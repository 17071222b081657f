"""One IVF index from many parts (a collection's chunks, or shards embedded elsewhere).

Train once on a sample drawn at random across all parts (training on the first rows, as autofaiss does, is
biased when files are sorted by path), fill one copy of the trained, empty index per part (in threads: faiss
releases the GIL while it adds), then merge the copies' inverted lists into one. The lists hold the catalog
ids themselves, so they survive the merge; an `IndexIDMap2` over IVF would not (each copy numbers its
vectors from 0). Finally nprobe is tuned to the recall target against exact search.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import UsageError
from .exact_rows import ExactRows, RowFile
from .openmp import load_faiss
from .vector_index import LOSSY_KINDS, VectorIndex, _check_vectors

faiss = load_faiss()
from .vectors_stream import unit_rows

TUNE_RECALL = 0.98  # recall@10 against exact search that an approximate index is tuned to

TRAIN_PER_LIST = 48      # training points per IVF list
TRAIN_MIN = 10_000


def sample_rows(sizes: Sequence[int], n: int, seed: int = 0) -> list[np.ndarray]:
    """`n` distinct rows drawn uniformly across parts of these sizes: sorted row numbers per part."""
    total = int(sum(sizes))
    pick = np.sort(np.random.default_rng(seed).choice(total, min(n, total), replace=False))
    bounds = np.cumsum([0, *sizes])
    return [pick[(pick >= lo) & (pick < hi)] - lo for lo, hi in zip(bounds[:-1], bounds[1:])]


def merged_bytes(n: int, code_size: int) -> int:
    """What the merged inverted lists of `n` vectors hold: each vector's code and its 8-byte id."""
    return n * (code_size + 8)


def build_ivf(parts: Sequence[tuple[np.ndarray, np.ndarray]], choice, dim: int, *, workers: int = 2,
              seed: int = 0, tune_with: tuple[np.ndarray, np.ndarray] | None = None,
              memory_budget: int | None = None, ondisk: str | os.PathLike | None = None) -> VectorIndex:
    """An IVF index (`choice` from `choose_index`) holding every part's (ids, vectors); vectors may be memory-
    mapped arrays (only the sampled rows and one part at a time are read). `tune_with`: all (ids, vectors),
    to tune nprobe against exact search over them (left at the choice's floor without it).

    When the merged lists would exceed `memory_budget` bytes, they are merged on disk instead: each filled
    part is written to a file under `ondisk` and dropped, and `faiss.contrib.ondisk.merge_ondisk` writes one
    `lists.ivfdata` there that the returned index reads through the page cache (`index.faiss` beside it is
    the index to `faiss.read_index` later; read it without IO_FLAG_MMAP, which crashed with faiss 1.15).

    A lossy choice (SQ8, PQ) keeps every part's vectors as exact rows to re-score with: in memory, or with `ondisk`
    in `exact.rows.npy` there (read with pread), where the merged lists go too."""
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

    code_size = faiss.extract_index_ivf(empty).code_size
    if memory_budget is not None and merged_bytes(sum(sizes), code_size) > memory_budget:
        if ondisk is None:
            raise UsageError(f"{sum(sizes):,} vectors need {merged_bytes(sum(sizes), code_size) / 2**20:,.0f} MiB "
                             f"of inverted lists, over the memory budget: give a folder to merge them on disk")
        merged = _merge_on_disk(empty, parts, fill, Path(ondisk), workers)
    else:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            filled = list(pool.map(fill, parts))
        merged = filled[0] if filled else faiss.clone_index(empty)
        for other in filled[1:]:
            merged.merge_from(other, 0)
    out = VectorIndex(merged, _exact_rows(parts, dim, ondisk) if choice.kind in LOSSY_KINDS else None)
    if tune_with is not None and merged.ntotal:
        tune_nprobe(out, *tune_with, floor=choice.nprobe)
    return out


def _exact_rows(parts, dim: int, ondisk: str | os.PathLike | None) -> ExactRows:
    ids = np.concatenate([np.asarray(i, np.int64) for i, _ in parts]) if parts else np.empty(0, np.int64)
    if ondisk is None:
        rows = np.concatenate([np.asarray(v, np.float16) for _, v in parts]) if parts \
            else np.empty((0, dim), np.float16)
    else:
        Path(ondisk).mkdir(parents=True, exist_ok=True)
        rows = np.lib.format.open_memmap(Path(ondisk) / "exact.rows.npy", mode="w+", dtype=np.float16,
                                         shape=(ids.size, dim))
        at = 0
        for _, v in parts:
            for s in range(0, len(v), 100_000):
                chunk = np.asarray(v[s:s + 100_000], np.float16)
                rows[at:at + len(chunk)] = chunk
                at += len(chunk)
        rows.flush()
        del rows
        # read back with pread, as a loaded index reads them: tuning's random rows through the mapping thrashed the
        # page cache at 10 M (10 GB of rows, 6 GB free)
        rows = RowFile(Path(ondisk) / "exact.rows.npy")
    return ExactRows(dim, ids, rows)


def _merge_on_disk(empty: faiss.Index, parts, fill, folder: Path, workers: int) -> faiss.Index:
    from faiss.contrib.ondisk import merge_ondisk

    folder.mkdir(parents=True, exist_ok=True)
    names = [str(folder / f"part_{k}.faiss") for k in range(len(parts))]

    def fill_to_file(k: int) -> None:
        faiss.write_index(fill(parts[k]), names[k])  # the filled part is freed once written

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(fill_to_file, range(len(parts))))
    merged = faiss.clone_index(empty)
    merge_ondisk(merged, names, str(folder / "lists.ivfdata"))
    for name in names:
        os.remove(name)
    faiss.write_index(merged, str(folder / "index.faiss"))
    return merged


def convert(index: VectorIndex, choice) -> VectorIndex:
    """The same ids and vectors in an index of another type: nothing is re-embedded (a lossy index's exact rows
    are what it is rebuilt from)."""
    ids, vecs = index.all_vectors()
    vecs = unit_rows(vecs)
    if choice.needs_training:
        step = 250_000  # parts filled side by side, then merged
        return build_ivf([(ids[s:s + step], vecs[s:s + step]) for s in range(0, len(ids), step)], choice, index.dim,
                         tune_with=(ids, vecs))
    new = VectorIndex.build(choice, index.dim)
    for start in range(0, len(ids), 100_000):
        new.index.add_with_ids(np.ascontiguousarray(vecs[start:start + 100_000], np.float32), ids[start:start + 100_000])
    return new


RERANK_FACTORS = (1, 2, 4, 8, 16, 32)
EXACT_SLICE = 500_000  # rows read and searched at a time: 1 GB of float32 at 512 dims


def exact_neighbours(queries: np.ndarray, vecs, k: int, step: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-`k` inner products of `queries` over `vecs` (rows), read a slice at a time so a memory-
    mapped collection larger than memory can be the reference: scores and row numbers (-1 past the end)."""
    step = step or EXACT_SLICE
    nq = len(queries)
    best_s = np.full((nq, k), -np.inf, np.float32)
    best_i = np.full((nq, k), -1, np.int64)
    for start in range(0, len(vecs), step):
        part = np.ascontiguousarray(vecs[start:start + step], np.float32)
        s, i = faiss.knn(queries, part, min(k, len(part)), metric=faiss.METRIC_INNER_PRODUCT)
        s, i = np.concatenate([best_s, s], 1), np.concatenate([best_i, np.where(i >= 0, i + start, -1)], 1)
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
    return best_s, best_i


def tune_nprobe(index: VectorIndex, ids: np.ndarray, vecs: np.ndarray, *, target: float = TUNE_RECALL, k: int = 10,
                queries: int = 256, floor: int = 1) -> float:
    """Set an IVF index's nprobe to the smallest power of two (not below `floor`) whose recall@k
    against exact search reaches `target`, measured on stored vectors used as queries (each one's
    own id left out of both answers), as autofaiss tunes its search parameters. Returns the recall.

    An index with exact rows re-scores its candidates: nprobe is tuned with the widest re-scoring, then the
    re-scoring factor is lowered while the recall stays at the target."""
    ivf = index.ivf
    if ivf is None or len(ids) <= k + 1:
        return 1.0
    rng = np.random.default_rng(0)
    pick = rng.choice(len(ids), min(queries, len(ids)), replace=False)
    q = np.ascontiguousarray(vecs[np.sort(pick)], np.float32)[np.argsort(np.argsort(pick))]
    _, truth_rows = exact_neighbours(q, vecs, k + 1)
    truth = [set(ids[r[r >= 0]].tolist()) - {int(ids[p])} for r, p in zip(truth_rows, pick)]

    def recall_at(nprobe: int) -> float:
        ivf.nprobe = nprobe
        _, got = index.search(q, k + 1)
        return float(np.mean([len(t & (set(g.tolist()) - {int(ids[p])})) / max(len(t), 1)
                              for t, g, p in zip(truth, got, pick)]))

    if index.exact is not None:
        index.exact.factor = RERANK_FACTORS[-1]

    # A quantised index (SQ8, PQ) may never reach the target: stop where probing more stops paying.
    nprobe, recall = 1, recall_at(1)
    while nprobe < ivf.nlist and (recall < target or nprobe < floor):
        more = min(2 * nprobe, ivf.nlist)
        better = recall_at(more)
        if recall >= target - 0.05 and better - recall < 0.002 and nprobe >= floor:
            break
        nprobe, recall = more, better
    ivf.nprobe = nprobe
    if index.exact is not None:
        for factor in RERANK_FACTORS:
            index.exact.factor = factor
            got = recall_at(nprobe)
            if got >= min(target, recall - 0.005):
                return got
        index.exact.factor = RERANK_FACTORS[-1]
    return recall
