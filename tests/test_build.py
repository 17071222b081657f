"""One IVF from parts: trained once on a sample across all parts, filled part by part, merged; equal to the
same IVF filled in one go (same quantiser), ids kept; the sample does not favour the first rows."""
from __future__ import annotations

import faiss
import numpy as np
import pytest

from mmretrieval.index import VectorIndex, build
from mmretrieval.index.build import build_ivf, convert, exact_neighbours, sample_rows, tune_nprobe
from mmretrieval.index.choose import choose_index
from mmretrieval.errors import UsageError


def _data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((20, d))
    x = c[rng.integers(20, size=n)] + 0.3 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_parts_merged_equal_one_index_with_the_same_quantiser(tmp_path):
    d, n = 24, 9000
    x = _data(n, d)
    ids = np.random.default_rng(1).permutation(10 * n)[:n].astype(np.int64) + 5
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")  # shards are read memory-mapped
    choice = choose_index(n, d, kind="ivf-flat")
    parts = [(ids[s:s + 2500], mm[s:s + 2500]) for s in range(0, n, 2500)]
    built = build_ivf(parts, choice, d, workers=2, tune_with=(ids, x))
    assert built.ntotal == n and set(built.ids().tolist()) == set(ids.tolist())
    one = faiss.clone_index(built.ivf)  # same trained quantiser, filled in one go
    one.reset()
    one.set_direct_map_type(faiss.DirectMap.NoMap)
    one.add_with_ids(x, ids)
    one.nprobe = built.ivf.nprobe
    q = _data(50, d, seed=3)
    s1, i1 = built.search(q, 10)
    s2, i2 = one.search(q, 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-6)
    np.testing.assert_allclose(built.reconstruct(ids[[7, 8000]]), x[[7, 8000]], atol=1e-6)  # ids kept
    assert choice.nprobe <= built.ivf.nprobe  # tuned against exact search, not below the floor


def test_the_training_sample_is_spread_across_parts():
    rows = sample_rows([1000, 1000, 8000], 1000, seed=0)
    counts = [r.size for r in rows]
    assert sum(counts) == 1000 and all(np.all(np.diff(r) > 0) for r in rows)
    assert 60 <= counts[0] <= 140 and 60 <= counts[1] <= 140 and 700 <= counts[2] <= 880  # proportional


def test_conversion_uses_it_and_keeps_every_vector():
    d, n = 16, 6000
    x = _data(n, d, seed=4)
    flat = VectorIndex.create(d)
    flat.add(np.arange(n) * 2, x)
    ivf = convert(flat, choose_index(n, d, kind="ivf-sq8"))
    assert ivf.kind == "ivf-sq8" and ivf.ntotal == n
    got = ivf.reconstruct(np.array([0, 2 * (n - 1)]))
    assert np.abs(got - x[[0, n - 1]]).max() < 1e-3  # the exact rows kept beside the 8-bit codes, in half precision


def test_over_the_memory_budget_the_lists_are_merged_on_disk(tmp_path):
    d, n = 24, 9000
    x = _data(n, d, seed=5)
    ids = np.arange(n, dtype=np.int64) * 3 + 1
    choice = choose_index(n, d, kind="ivf-flat")
    parts = [(ids[s:s + 3000], x[s:s + 3000]) for s in range(0, n, 3000)]
    in_memory = build_ivf(parts, choice, d)
    budget = n * (4 * d + 8) - 1  # one byte short of the merged lists
    with pytest.raises(UsageError, match="merge them on disk"):
        build_ivf(parts, choice, d, memory_budget=budget)
    on_disk = build_ivf(parts, choice, d, memory_budget=budget, ondisk=tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["index.faiss", "lists.ivfdata"]
    assert (tmp_path / "m" / "lists.ivfdata").stat().st_size >= n * 4 * d  # the codes live on disk
    again = faiss.read_index(str(tmp_path / "m" / "index.faiss"))  # a later process reads it back
    again.nprobe = in_memory.ivf.nprobe
    q = _data(40, d, seed=6)
    s1, i1 = in_memory.search(q, 10)
    for index in (on_disk, VectorIndex(again)):
        index.ivf.nprobe = in_memory.ivf.nprobe
        s2, i2 = index.search(q, 10)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_allclose(s1, s2, atol=1e-6)


def test_exact_neighbours_read_a_slice_at_a_time_match_one_search_over_all():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2_300, 32)).astype(np.float32)
    q = rng.standard_normal((17, 32)).astype(np.float32)
    want_s, want_i = faiss.knn(q, x, 10, metric=faiss.METRIC_INNER_PRODUCT)
    got_s, got_i = exact_neighbours(q, x, 10, step=500)  # slices that split the top 10 across them
    assert (got_i == want_i).all()
    np.testing.assert_allclose(got_s, want_s, rtol=1e-5)
    s, i = exact_neighbours(q[:2], x[:4], 10, step=3)  # fewer rows than k: the rest are -1
    assert (i[:, 4:] == -1).all() and sorted(i[0, :4].tolist()) == [0, 1, 2, 3]


def test_tuning_reads_the_reference_from_a_memory_mapped_collection(tmp_path, monkeypatch):
    # a collection larger than memory is tuned against from its file, a slice at a time: never all in float32
    x = _data(6_000, 32, seed=4)
    on_disk = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float16, shape=x.shape)
    on_disk[:] = x
    ids = np.arange(len(x), dtype=np.int64) * 3
    index = build_ivf([(ids, on_disk)], choose_index(len(x), 32, kind="ivf-sq8"), 32)
    index.ivf.nprobe = 1
    monkeypatch.setattr(build, "EXACT_SLICE", 1_000)
    reads = []

    class Guarded:  # the file, refusing any read of more rows than a slice
        shape, dtype = on_disk.shape, on_disk.dtype

        def __len__(self):
            return len(on_disk)

        def __getitem__(self, key):
            got = on_disk[key]
            reads.append(len(got))
            assert len(got) <= 1_000
            return got

    recall = tune_nprobe(index, ids, Guarded())
    assert recall >= 0.98 and index.ivf.nprobe > 1
    assert sum(reads) >= len(x)  # every row was read, a slice at a time
