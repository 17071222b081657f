import numpy as np
import pytest

from mmretrieval.errors import UsageError
from mmretrieval.index import ExactIndex, VectorIndex


def _unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_flat_index_equals_exact_reference_through_add_remove_save(tmp_path):
    rng = np.random.default_rng(0)
    d = 24
    vi, ex = VectorIndex.create(d), ExactIndex(d)
    ids = rng.permutation(5000)[:600].astype(np.int64) + 3
    vecs = _unit(rng, ids.size, d)
    for part in np.array_split(np.arange(ids.size), 4):
        vi.add(ids[part], vecs[part])
        ex.add(ids[part], vecs[part])
    gone = ids[::7]
    assert vi.remove(gone) == gone.size
    ex.remove(gone)
    vi.save(tmp_path / "v.faiss")
    vi = VectorIndex.load(tmp_path / "v.faiss")
    q = _unit(rng, 20, d)
    s1, i1 = vi.search(q, 10)
    s2, i2 = ex.search(q, 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-5)
    # a filter over a subset of ids, with ids far above 8 (bitmap length is in bytes)
    allowed = ids[1::3]
    allowed = allowed[~np.isin(allowed, gone)]
    s1, i1 = vi.search(q, 10, allowed=allowed)
    s2, i2 = ex.search(q, 10, allowed=allowed)
    np.testing.assert_array_equal(i1, i2)
    assert np.isin(i1, allowed).all()


def test_filter_never_returns_ids_outside_it():
    rng = np.random.default_rng(1)
    vi = VectorIndex.create(8)
    vecs = _unit(rng, 30, 8)
    vi.add(np.arange(30), vecs)
    s, i = vi.search(vecs[29], 5, allowed=np.array([1, 2]))
    assert set(i[0][i[0] >= 0]) == {1, 2}
    s, i = vi.search(vecs[0], 5, allowed=np.array([], np.int64))
    assert (i == -1).all()


def test_index_rejects_bad_input():
    vi = VectorIndex.create(4)
    with pytest.raises(UsageError, match="L2-normalised"):
        vi.add(np.array([1]), np.ones((1, 4), np.float32))
    with pytest.raises(UsageError, match="shape"):
        vi.add(np.array([1]), np.ones((1, 5), np.float32) / np.sqrt(5))
    v = np.eye(4, dtype=np.float32)[:1]
    vi.add(np.array([1]), v)
    with pytest.raises(UsageError, match="already in the index"):
        vi.add(np.array([1]), v)
    with pytest.raises(UsageError, match="k must be"):
        vi.search(v, 0)


def test_save_is_atomic_and_a_half_written_file_is_not_loaded(tmp_path):
    vi = VectorIndex.create(4)
    vi.add(np.array([5]), np.eye(4, dtype=np.float32)[:1])
    path = tmp_path / "vectors.faiss"
    vi.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["vectors.faiss"]  # no temp file left behind
    data = path.read_bytes()
    (tmp_path / "half.faiss").write_bytes(data[: len(data) // 2])
    from mmretrieval.errors import MMRError

    with pytest.raises(MMRError, match="cannot read"):
        VectorIndex.load(tmp_path / "half.faiss")


def test_single_queries_search_on_one_thread_and_restore_the_callers_threads():
    """A few queries run faiss on the calling thread (torch's spinning workers made threaded ones slow);
    the caller's thread count comes back, and torch's own stays what it was."""
    import faiss
    import torch

    from mmretrieval.index.vector_index import FEW_QUERIES, matvec

    rng = np.random.default_rng(3)
    vi, ex = VectorIndex.create(16), ExactIndex(16)
    ids = np.arange(400, dtype=np.int64)
    vecs = _unit(rng, 400, 16)
    vi.add(ids, vecs)
    ex.add(ids, vecs)
    seen = []
    real = faiss.omp_set_num_threads
    prev, torch_threads = faiss.omp_get_max_threads(), torch.get_num_threads()
    try:
        faiss.omp_set_num_threads = lambda n: (seen.append(n), real(n))[1]
        for nq in (1, FEW_QUERIES + 1):
            q = _unit(rng, nq, 16)
            np.testing.assert_array_equal(vi.search(q, 5, allowed=ids[::2])[1], ex.search(q, 5, allowed=ids[::2])[1])
    finally:
        faiss.omp_set_num_threads = real
    assert faiss.omp_get_max_threads() == prev and torch.get_num_threads() == torch_threads
    assert seen == ([1, prev] if prev > 1 else [])  # the batch of FEW_QUERIES + 1 kept the threads
    np.testing.assert_allclose(matvec(vecs, vecs[:2]), vecs @ vecs[:2].T, atol=1e-6)
    np.testing.assert_allclose(matvec(vecs, vecs[:9]), vecs @ vecs[:9].T, atol=1e-6)
