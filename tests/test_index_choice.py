"""Index type as a pure function of (count, dim, memory), approximate types against the exact reference,
and conversion that keeps ids and needs no re-embedding."""
import numpy as np
import pytest

import mmretrieval as mmr
from mmretrieval.index.build import convert, tune_nprobe
from mmretrieval.index import ExactIndex, VectorIndex
from mmretrieval.errors import UsageError
from mmretrieval.index.choose import choose_index, estimate_bytes, nlist_for, parse_bytes


def test_choice_is_a_pure_function_of_size_and_memory():
    assert choose_index(1_000, 512).kind == "flat"
    assert choose_index(49_999, 512).kind == "flat"
    big = choose_index(1_000_000, 512)
    assert big.kind == "ivf-fp16" and big.factory == "IVF4096,SQfp16" and big.nlist == 4096 and big.nprobe >= 16
    assert choose_index(1_000_000, 512, kind="ivf-flat").factory == "IVF4096,Flat"  # exact lists, on request
    assert estimate_bytes("ivf-fp16", 1_000_000, 512) < estimate_bytes("ivf-flat", 1_000_000, 512) * 0.55
    assert choose_index(1_000_000, 512, memory_budget=parse_bytes("1.5G")).kind == "ivf-fp16"
    assert choose_index(1_000_000, 512, memory_budget=parse_bytes("600M")).kind == "ivf-sq8"
    assert choose_index(10_000, 512, memory_budget=parse_bytes("15M")).kind == "ivf-fp16"  # flat (21 MB) does not fit
    assert estimate_bytes("ivf-sq8", 1_000_000, 512) <= 600 * 2**20  # the compact 1 M × 512 target
    pq = choose_index(1_000_000, 512, memory_budget=parse_bytes("100M"))
    assert pq.kind == "ivf-pq" and pq.est_bytes <= parse_bytes("100M")
    assert choose_index(10, 512, kind="hnsw").factory == "HNSW32,Flat"
    assert nlist_for(1000) <= 1000 // 39 and nlist_for(10**6) == 4096
    with pytest.raises(ValueError, match="valid"):
        choose_index(10, 8, kind="lsh")
    with pytest.raises(UsageError, match="too small .*needs about .*larger --memory-budget"):
        choose_index(10**9, 512, memory_budget=1000)
    assert parse_bytes("1.5G") == int(1.5 * 2**30) and parse_bytes("500000") == 500000


def _clustered(n, d, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((100, d))
    x = (centers[rng.integers(100, size=n)] + 0.35 * rng.standard_normal((n, d))).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind,min_recall", [("ivf-fp16", 0.95), ("ivf-flat", 0.95), ("ivf-sq8", 0.95), ("hnsw", 0.95),
                                             ("ivf-pq", 0.95)])  # PQ's candidates re-scored from exact rows
def test_approximate_types_against_exact_search(kind, min_recall, tmp_path):
    d, n = 32, 8000 if kind == "ivf-pq" else 20000
    x = _clustered(n, d)
    ids = np.arange(n, dtype=np.int64) * 7 + 3
    flat, exact = VectorIndex.create(d), ExactIndex(d)
    flat.add(ids, x)
    exact.add(ids, x)
    approx = convert(flat, choose_index(n, d, kind=kind))
    assert approx.kind == kind and approx.ntotal == n
    np.testing.assert_array_equal(np.sort(approx.ids()), np.sort(ids))  # ids kept
    rng = np.random.default_rng(1)
    q = x[rng.integers(n, size=100)] + 0.05 * rng.standard_normal((100, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)

    def recall(allowed=None):
        _, a = approx.search(q, 10, allowed=allowed)
        _, b = exact.search(q, 10, allowed=allowed)
        return np.mean([len(set(u) & set(v)) / 10 for u, v in zip(a, b)]), a

    r, _ = recall()
    assert r >= min_recall, r
    if kind != "hnsw":  # the scores of what both found: exact, or to half precision (also SQ8/PQ: re-scored)
        s_a, i_a = approx.search(q, 10)
        s_b, i_b = exact.search(q, 10)
        diffs = [abs(a - dict(zip(ib, sb))[i]) for sa, ia, sb, ib in zip(s_a, i_a, s_b, i_b)
                 for a, i in zip(sa, ia) if i in set(ib)]
        assert len(diffs) > 900 and max(diffs) < (1e-5 if kind == "ivf-flat" else 1e-3), max(diffs)
    allowed = ids[::4]
    r, got = recall(allowed)
    assert r >= min_recall - 0.05 and np.isin(got[got >= 0], allowed).all()
    # removal, then save and load: still the same contract
    gone = ids[:500]
    assert approx.remove(gone) == 500
    exact.remove(gone)
    approx.save(tmp_path / "v.faiss")
    approx = VectorIndex.load(tmp_path / "v.faiss")
    assert approx.kind == kind and approx.ntotal == n - 500
    _, got = approx.search(q, 10)
    assert not np.isin(got, gone).any()
    assert recall()[0] >= min_recall - 0.02


def test_engine_converts_on_request_without_re_embedding(tmp_path, tiny_space_dir, capsys):
    from mmretrieval.cli import main
    from media import make_media

    make_media(tmp_path / "media")
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    eng.index([tmp_path / "media"])
    before = {h.id: h.path for h in eng.search("a red circle", k=50, types=["image"])}
    rep = eng.index([tmp_path / "media"], index_type="hnsw")
    assert rep.items_added == 0 and eng.stats()["index_type"] == "hnsw"
    after = {h.id: h.path for h in eng.search("a red circle", k=50, types=["image"])}
    assert after == before  # same ids, same results (tiny collection: HNSW is exact here)
    assert eng.check()["consistent"]
    eng.close()
    # the choice is remembered, and shown by info
    assert main(["index", str(tmp_path / "media"), "--index", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    main(["info", "--index", str(tmp_path / "idx")])
    assert "hnsw" in capsys.readouterr().out
    # back to exact, and a deletion on the way
    (tmp_path / "media" / "photos" / "red.png").unlink()
    assert main(["index", str(tmp_path / "media"), "--index", str(tmp_path / "idx"), "--index-type", "flat"]) == 0
    eng = mmr.Engine(tmp_path / "idx", readonly=True)
    assert eng.stats()["index_type"] == "flat" and eng.check()["consistent"]
    assert main(["index", str(tmp_path / "media"), "--index", str(tmp_path / "idx"), "--memory-budget", "lots"]) == 2


def test_ivf_flat_indexes_are_kept_until_a_budget_or_staleness_calls_for_a_rebuild(tmp_path, tiny_space_dir,
                                                                                    monkeypatch):
    """ivf-fp16 is the default IVF now; an index built as ivf-flat under the auto policy is not converted
    just for that (its scores are exact), but is where a memory budget it exceeds is set. Nothing is re-embedded."""
    from mmretrieval.index import choose
    from mmretrieval.ingest.embed import EmbeddedFile
    from mmretrieval.ingest.walk import FileEntry

    monkeypatch.setattr(choose, "FLAT_UP_TO", 300)  # IVF sizes without 50 k items
    (tmp_path / "empty").mkdir()
    n, rng = 1200, np.random.default_rng(4)

    def filled(name: str, index_type: str | None) -> mmr.Engine:
        eng = mmr.Engine(tmp_path / name, model=str(tiny_space_dir))
        eng.index([tmp_path / "empty"], index_type=index_type)
        x = _clustered(n, eng.dim, seed=6)
        eng.add_embeddings([EmbeddedFile(FileEntry(f"/synthetic/{i:05d}.jpg", "image", 1, 1), f"{i:064x}",
                                         eng.space.fingerprint, [({"width": 1, "height": 1}, None)], x[i:i + 1])
                            for i in range(n)])
        return eng

    fresh = filled("fresh", None)
    assert fresh.stats()["index_type"] == "ivf-fp16"
    fresh.close()
    eng = filled("old", "ivf-flat")
    assert eng.stats()["index_type"] == "ivf-flat"
    q = rng.standard_normal(eng.dim).astype(np.float32)
    q /= np.linalg.norm(q)
    eng.index([tmp_path / "empty"], index_type="auto")
    assert eng.stats()["index_type"] == "ivf-flat"  # kept: auto alone does not rebuild it
    budget = (choose.estimate_bytes("ivf-fp16", n, eng.dim) + choose.estimate_bytes("ivf-flat", n, eng.dim)) // 2
    eng.index([tmp_path / "empty"], memory_budget=budget)
    assert eng.stats()["index_type"] == "ivf-fp16" and eng.store.vectors.ntotal == n and eng.check()["consistent"]
    eng.store.vectors.ivf.nprobe = eng.store.vectors.ivf.nlist  # both answers exact up to half precision
    after = eng.search_vector(q, k=5)
    eng.close()
    eng = filled("exact", "ivf-flat")
    eng.store.vectors.ivf.nprobe = eng.store.vectors.ivf.nlist
    exact = eng.search_vector(q, k=5)
    assert [h.id for h in after] == [h.id for h in exact] and len(exact) == 5
    np.testing.assert_allclose([h.score for h in after], [h.score for h in exact], atol=1e-4)
    eng.close()


def test_ivf_nprobe_is_tuned_to_the_recall_target(tmp_path):
    d, n = 32, 40000
    x = _clustered(n, d, seed=3)
    ids = np.arange(n, dtype=np.int64)
    flat, exact = VectorIndex.create(d), ExactIndex(d)
    flat.add(ids, x)
    exact.add(ids, x)
    choice = choose_index(n, d, kind="ivf-flat")
    approx = convert(flat, choice)
    ivf = approx.ivf
    assert choice.nprobe <= ivf.nprobe < ivf.nlist  # tuned, not a full scan
    rng = np.random.default_rng(5)
    q = x[rng.integers(n, size=200)] + 0.05 * rng.standard_normal((200, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    _, truth = exact.search(q, 10)

    def recall(index):
        _, got = index.search(q, 10)
        return np.mean([len(set(u) & set(v)) / 10 for u, v in zip(got, truth)])

    tuned = recall(approx)
    assert tuned >= 0.95
    ivf.nprobe = 1
    assert recall(approx) < tuned - 0.05  # the tuning had work to do
    tune_nprobe(approx, *flat.all_vectors())
    approx.save(tmp_path / "v.faiss")
    assert VectorIndex.load(tmp_path / "v.faiss").ivf.nprobe == ivf.nprobe > 1
    # a selective filter (0.5 % of the ids) widens the search: still k allowed hits, the exact ones
    allowed = ids[::200]
    _, got = approx.search(q, 10, allowed=allowed)
    _, want = exact.search(q, 10, allowed=allowed)
    assert (got >= 0).all() and np.isin(got, allowed).all()
    assert np.mean([len(set(u) & set(v)) / 10 for u, v in zip(got, want)]) >= 0.95


def test_filters_letting_most_items_through_match_exact_search(monkeypatch):
    """Filters passing >= half the items are applied after an unfiltered search (faster); when the
    nearest items are mostly filtered out, the search falls back to faiss's selector: same answers."""
    d, n = 16, 6000
    x = _clustered(n, d, seed=9)
    ids = np.arange(n, dtype=np.int64) * 3 + 1
    base, exact = VectorIndex.create(d), ExactIndex(d)
    base.add(ids, x)
    exact.add(ids, x)
    flat = convert(base, choose_index(n, d, kind="ivf-flat"))  # the kind this path serves
    ivf = flat.ivf
    ivf.nprobe = ivf.nlist  # every list: exact answers, so they can be compared one for one
    outcomes = []
    real = VectorIndex._post_filtered
    monkeypatch.setattr(VectorIndex, "_post_filtered",
                        lambda self, *a: outcomes.append(real(self, *a)) or outcomes[-1])
    rng = np.random.default_rng(2)
    q = x[rng.integers(n, size=50)]
    allowed = ids[rng.random(n) < 0.7]
    s1, got = flat.search(q, 10, allowed=allowed)
    s2, want = exact.search(q, 10, allowed=allowed)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(s1, s2, atol=1e-5)
    assert len(outcomes) == 1 and outcomes[0] is not None  # answered after an unfiltered search
    # a query whose 300 nearest items are all filtered out, with 90 % of items allowed
    order = np.argsort(-(x @ x[0]))
    allowed = np.setdiff1d(ids, ids[order[:300]])
    _, got = flat.search(x[:1], 10, allowed=allowed)
    _, want = exact.search(x[:1], 10, allowed=allowed)
    np.testing.assert_array_equal(got, want)
    assert np.isin(got, allowed).all() and outcomes[-1] is None  # fell back to the selector
