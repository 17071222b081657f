"""A compressed index (SQ8, PQ) re-scores its candidates from exact rows kept beside it on disk: recall back near
exact search, the scores shown are the exact cosines, the rows follow every add, removal, delta and compaction,
are read from their file where asked for, and `mmr check` sees them."""
from __future__ import annotations

import numpy as np
import pytest

import mmretrieval as mmr
from mmretrieval.errors import MMRError
from mmretrieval.index import ExactIndex, VectorIndex
from mmretrieval.index.build import build_ivf
from mmretrieval.index.choose import IndexChoice
from mmretrieval.index.exact_rows import ExactRows, companions
from mmretrieval.ingest.embed import EmbeddedFile
from mmretrieval.ingest.walk import FileEntry


def _clustered(rng, n, d, centers=200, spread=0.6):
    c = rng.standard_normal((centers, d))
    x = c[rng.integers(centers, size=n)] + spread * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _recall(got, want):
    return float(np.mean([len(set(a[a >= 0]) & set(b[b >= 0])) / 10 for a, b in zip(got, want)]))


@pytest.fixture(scope="module")
def pq():
    """A coarse PQ (8 bytes for 64 dims) over clustered vectors, built from parts and tuned against exact search."""
    rng = np.random.default_rng(0)
    d, n = 64, 20_000
    x = _clustered(rng, n, d)
    ids = np.arange(n, dtype=np.int64) * 3 + 11
    choice = IndexChoice("ivf-pq", "IVF64,PQ8np", nlist=64, pq_m=8, nprobe=8)
    vi = build_ivf([(ids[:12_000], x[:12_000]), (ids[12_000:], x[12_000:])], choice, d, tune_with=(ids, x))
    exact = ExactIndex(d)
    exact.add(ids, x)
    q = x[rng.integers(n, size=150)] + 0.1 * rng.standard_normal((150, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return vi, exact, ids, x, q


def test_re_scoring_brings_pq_back_to_near_exact_recall_with_exact_scores(pq):
    vi, exact, ids, x, q = pq
    want_s, want = exact.search(q, 10)
    got_s, got = vi.search(q, 10)
    rows, vi.exact = vi.exact, None
    try:
        _, codes_only = vi.search(q, 10)  # the same lists probed, ranked by PQ's approximate scores
    finally:
        vi.exact = rows
    assert _recall(codes_only, want) < 0.8  # what the codes alone give here
    assert _recall(got, want) >= 0.97
    assert 1 <= vi.exact.factor <= 32 and f"re-scored x{vi.exact.factor}" in vi.description
    both = [(s, dict(zip(wi, ws))[i]) for gs, gi, ws, wi in zip(got_s, got, want_s, want)
            for s, i in zip(gs, gi) if i in set(wi)]
    assert len(both) > 1400 and max(abs(a - b) for a, b in both) < 1e-3  # the exact cosines (float16 rows)
    assert (np.diff(got_s, axis=1) <= 0).all()  # ordered by them
    # filters: a selective one (brute force over its rows) and a broad one (post-filtered), both exact
    for allowed in (ids[::50], ids[::2]):
        _, a = vi.search(q, 10, allowed=allowed)
        _, b = exact.search(q, 10, allowed=allowed)
        assert _recall(a, b) >= 0.95 and np.isin(a[a >= 0], allowed).all()
    # the vectors read back are the exact rows, not the codes' decoding
    np.testing.assert_allclose(vi.reconstruct(ids[[0, 5000]]), x[[0, 5000]], atol=1e-3)
    part, vecs = next(vi.iter_vectors(ids[:100]))
    np.testing.assert_allclose(vecs, x[:100], atol=1e-3)
    # a range search keeps what the exact cosine puts at or above the radius
    hits, scores = vi.range_search(x[:1], 0.8)[0]
    truth = ids[(x @ x[0]) >= 0.8]
    assert set(hits.tolist()) <= set(truth.tolist()) and len(hits) >= 0.9 * len(truth) and (scores >= 0.8).all()


def test_the_rows_follow_writes_and_are_read_from_their_file(pq, tmp_path):
    vi, _, ids, x, q = pq
    base = tmp_path / "vectors.00000001.faiss"
    vi.save(base)
    assert all(p.exists() for p in companions(base))
    loaded = VectorIndex.load(base)
    assert loaded.exact.on_disk and loaded.exact.factor == vi.exact.factor and not loaded.lossy
    np.testing.assert_array_equal(loaded.search(q, 10)[1], vi.search(q, 10)[1])
    # added since the base: re-scored from memory; removed: gone from answers and from the next base
    new_ids = np.array([10**7, 10**7 + 1], np.int64)
    loaded.add(new_ids, x[:2])
    assert loaded.remove(ids[:2]) == 2
    s, i = loaded.search(x[:1], 3)
    assert i[0, 0] == 10**7 and abs(s[0, 0] - 1.0) < 1e-3 and ids[0] not in i[0]
    base2 = tmp_path / "vectors.00000002.faiss"
    loaded.save(base2)
    again = VectorIndex.load(base2)
    assert len(again.exact) == again.ntotal == vi.ntotal
    assert again.exact.missing(again.ids()).size == 0 and again.exact.missing(ids[:2]).tolist() == ids[:2].tolist()
    with pytest.raises(MMRError, match="mmr check --repair"):
        again.exact.rows(ids[:1])


def test_in_an_index_deltas_compaction_and_check_keep_the_rows(tmp_path, tiny_space_dir):
    from mmretrieval.synth import shape_image

    shape_image("red", "circle", size=64).save(tmp_path / "red.png")
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    eng.index([tmp_path / "red.png"], index_type="ivf-pq")  # pinned: converted once there are enough vectors
    rng = np.random.default_rng(3)
    x = _clustered(rng, 3000, eng.dim, centers=40, spread=0.3)
    fp = eng.space.fingerprint

    def files(start, n, tag=1):
        return [EmbeddedFile(FileEntry(f"/synthetic/{i:06d}.jpg", "image", tag, tag), f"{i:08d}-{tag}", fp,
                             [({"width": 1, "height": 1}, None)], x[i][None]) for i in range(start, start + n)]

    eng.add_embeddings(files(0, 2900))
    assert eng.stats()["index_type"] == "ivf-pq" and "re-scored" in eng.stats()["index_description"]
    eng.add_embeddings(files(2900, 100))  # a delta: its rows live in memory and in the delta file
    eng.remove(["/synthetic/000000.jpg"])
    segs = eng.store.segments()
    assert len(segs) == 3 and eng.stats()["vector_segments"]["exact_rows_bytes"] >= 2900 * eng.dim * 2
    reader = mmr.Engine(eng.path, readonly=True)
    s, got = reader.store.vectors.search(x[2950:2953], 1)
    assert abs(s - 1.0).max() < 1e-3  # a vector added by a delta finds itself at its exact cosine
    assert reader.check()["consistent"] and reader.check()["vectors_without_exact_row"] == 0
    reader.close()
    eng.compact()
    on_disk = sorted(p.name for p in eng.path.iterdir() if p.name.startswith("vectors"))
    base = eng.store.segments()[0]
    assert on_disk == sorted([base, *(c.name for c in companions(eng.path / base))])  # old rows cleaned up
    eng.close()
    # rows lost from outside: check says so, repair puts the codes' decoding in their place and says that
    rows = ExactRows.load(eng.path / base)
    keep = np.ones(len(rows), bool)
    keep[:5] = False
    ExactRows(rows.dim, rows._ids[keep], np.asarray(rows._rows)[keep], rows.factor).save(
        eng.path / base, rows._ids[keep])
    eng = mmr.Engine(eng.path)
    assert eng.check()["vectors_without_exact_row"] == 5 and not eng.check()["consistent"]
    assert eng.check(repair=True)["repaired"]["exact_rows_from_codes"] == 5
    assert eng.check()["consistent"]
    eng.close()


def test_a_crash_while_the_rows_are_written_leaves_the_committed_index(tmp_path, tiny_space_dir, monkeypatch):
    from mmretrieval.index import exact_rows
    from mmretrieval.synth import shape_image

    shape_image("red", "circle", size=64).save(tmp_path / "red.png")
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    eng.index([tmp_path / "red.png"], index_type="ivf-sq8")
    rng = np.random.default_rng(4)
    x = _clustered(rng, 2000, eng.dim, centers=40, spread=0.3)
    fp = eng.space.fingerprint

    def files(start, n):
        return [EmbeddedFile(FileEntry(f"/synthetic/{i:06d}.jpg", "image", 1, 1), f"{i:08d}", fp,
                             [({"width": 1, "height": 1}, None)], x[i][None]) for i in range(start, start + n)]

    eng.add_embeddings(files(0, 1500))
    committed = eng.store.segments()
    assert eng.stats()["index_type"] == "ivf-sq8"
    real = exact_rows.atomic_write

    def dies_at_the_ids(path, write):
        if path.name.endswith(exact_rows.IDS_SUFFIX):
            real(path.with_name(path.name + ".tmp"), write)  # a half-written leftover, as a kill leaves
            raise KeyboardInterrupt  # killed between the rows and their ids: the catalog names nothing new
        real(path, write)

    monkeypatch.setattr(exact_rows, "atomic_write", dies_at_the_ids)
    with pytest.raises(KeyboardInterrupt):
        eng.compact()
    monkeypatch.setattr(exact_rows, "atomic_write", real)
    eng.close()
    reader = mmr.Engine(tmp_path / "idx", readonly=True)
    assert reader.store.segments() == committed and reader.check()["consistent"]
    s, _ = reader.store.vectors.search(x[:3], 1)
    assert abs(s - 1.0).max() < 1e-3
    reader.close()
    eng = mmr.Engine(tmp_path / "idx")
    eng.add_embeddings(files(1500, 10))  # the next writer clears what the crash left
    base = eng.store.segments()[0]
    keep = {*eng.store.segments(), *(c.name for c in companions(eng.path / base))}
    assert {p.name for p in eng.path.iterdir() if p.name.startswith("vectors")} == keep
    assert eng.check()["consistent"]
    eng.close()
