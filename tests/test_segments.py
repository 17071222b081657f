"""Costs that grow with the change: IVF removes by id without a rebuild, and a checkpoint writes a delta
segment (added vectors + tombstones) instead of the whole index; readers catch up by applying the new
deltas; the deltas are merged into a new base as they grow or at `mmr compact`; a kill at any moment
leaves base + deltas consistent with the catalog."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import faiss
import numpy as np
import pytest

import mmretrieval as mmr
from mmretrieval.index.build import convert
from mmretrieval.index import ExactIndex, VectorIndex, segments
from mmretrieval.index.choose import choose_index
from mmretrieval.ingest.embed import EmbeddedFile
from mmretrieval.ingest.walk import FileEntry


def _unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clustered(rng, n, d):
    centers = _unit(rng, 40, d)
    x = centers[rng.integers(40, size=n)] + 0.3 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _ivf(kind, ids, x):
    flat = VectorIndex.create(x.shape[1])
    flat.add(ids, x)
    vi = convert(flat, choose_index(len(ids), x.shape[1], kind=kind))
    vi.ivf.nprobe = vi.ivf.nlist  # every list: answers comparable one for one with exact search
    return vi


def _same_answers(vi, ex, q, k=10):
    s1, i1 = vi.search(q, k)
    s2, i2 = ex.search(q, k)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-5)


def test_ivf_holds_the_ids_and_removes_without_a_rebuild():
    rng = np.random.default_rng(0)
    d, n = 16, 4000
    ids = rng.permutation(100_000)[:n].astype(np.int64) + 7
    x = _clustered(rng, n, d)
    vi, ex = _ivf("ivf-flat", ids, x), ExactIndex(d)
    ex.add(ids, x)
    assert not isinstance(vi.index, faiss.IndexIDMap2)  # the lists store the catalog ids themselves
    structure = vi.index
    gone = ids[::9]
    assert vi.remove(gone) == gone.size
    ex.remove(gone)
    assert vi.index is structure and vi.ntotal == n - gone.size  # removed in place, nothing rebuilt
    assert set(vi.ids().tolist()) == set(ids.tolist()) - set(gone.tolist())
    np.testing.assert_allclose(vi.reconstruct(ids[1:3]), x[1:3], atol=1e-6)
    with pytest.raises(RuntimeError):
        vi.reconstruct(gone[:1])
    _same_answers(vi, ex, _unit(rng, 30, d))
    assert vi.remove(gone) == 0  # removing again is harmless


def test_an_ivf_file_from_before_is_loaded_with_the_same_ids_and_answers(tmp_path):
    """IVF indexes used to sit under IndexIDMap2 (with internal ids 0..n-1 in the lists): such a file
    loads, its lists get the catalog ids, and the next write is a whole new base."""
    rng = np.random.default_rng(1)
    d, n = 16, 3000
    ids = rng.permutation(50_000)[:n].astype(np.int64) + 1
    x = _clustered(rng, n, d)
    inner = faiss.index_factory(d, "IVF32,Flat", faiss.METRIC_INNER_PRODUCT)
    inner.train(x)
    inner.nprobe = 32
    inner.make_direct_map()
    old = faiss.IndexIDMap2(inner)
    old.add_with_ids(x, ids)
    faiss.write_index(old, str(tmp_path / "old.faiss"))
    q = _unit(rng, 20, d)
    want_s, want_i = old.search(q, 10)

    vi = VectorIndex.load(tmp_path / "old.faiss")
    assert vi.kind == "ivf-flat" and vi.ivf is not None and not isinstance(vi.index, faiss.IndexIDMap2)
    assert vi.changes() is None  # migrated: only a whole index can describe it
    got_s, got_i = vi.search(q, 10)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_allclose(got_s, want_s, atol=1e-6)
    np.testing.assert_array_equal(np.sort(vi.ids()), np.sort(ids))
    assert vi.remove(ids[:5]) == 5 and vi.ntotal == n - 5


@pytest.mark.parametrize("kind", ["flat", "ivf-flat", "ivf-sq8", "ivf-pq"])
def test_base_plus_deltas_equals_the_index_in_memory(tmp_path, kind):
    rng = np.random.default_rng(2)
    d, n = 16, 3000
    ids = np.arange(n, dtype=np.int64) * 2 + 1
    x = _clustered(rng, n, d)
    if kind == "flat":
        vi = VectorIndex.create(d)
        vi.add(ids, x)
    else:
        vi = _ivf(kind, ids, x)
    assert vi.changes() is None  # never written: a base first
    vi.save(tmp_path / "base.faiss")
    vi.persisted()
    assert vi.changes().empty
    next_id = int(ids.max()) + 1
    for step in range(3):
        new = np.arange(next_id, next_id + 40, dtype=np.int64)
        next_id += 40
        vi.add(new, _clustered(rng, 40, d))
        vi.remove(np.concatenate([ids[step * 50:step * 50 + 30], new[:5]]))  # old ones, and just-added ones
        delta = vi.changes()
        assert not np.isin(new[:5], delta.ids).any()  # added then removed: never written
        assert delta.ids.size == 35 and np.isin(ids[step * 50:step * 50 + 30], delta.removed).all()
        segments.write_delta(tmp_path / f"d{step}.delta", delta)
        vi.persisted()
    loaded = VectorIndex.load(tmp_path / "base.faiss")
    for step in range(3):
        loaded.apply(segments.read_delta(tmp_path / f"d{step}.delta"))
    np.testing.assert_array_equal(np.sort(loaded.ids()), np.sort(vi.ids()))
    q = _unit(rng, 25, d)
    s1, i1 = loaded.search(q, 10)
    s2, i2 = vi.search(q, 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-6)
    # a replay is idempotent: applying a delta again changes nothing
    loaded.apply(segments.read_delta(tmp_path / "d2.delta"))
    assert loaded.ntotal == vi.ntotal


def test_hnsw_removal_asks_for_a_whole_write():
    rng = np.random.default_rng(3)
    d = 8
    flat = VectorIndex.create(d)
    flat.add(np.arange(300), _unit(rng, 300, d))
    vi = convert(flat, choose_index(300, d, kind="hnsw"))
    vi.persisted()
    vi.add(np.array([1000]), _unit(rng, 1, d))
    assert vi.changes().ids.tolist() == [1000]
    vi.remove(np.array([5]))  # the graph is rebuilt: a delta cannot say that
    assert vi.changes() is None and vi.ntotal == 300


def test_journal_stops_holding_copies_past_a_quarter_of_the_index(monkeypatch):
    from mmretrieval.index import vector_index

    monkeypatch.setattr(vector_index, "JOURNAL_MIN_BYTES", 0)
    rng = np.random.default_rng(4)
    vi = VectorIndex.create(8)
    vi.add(np.arange(100), _unit(rng, 100, 8))
    vi.persisted()
    vi.add(np.arange(100, 110), _unit(rng, 10, 8))
    assert vi.changes() is not None
    vi.add(np.arange(110, 160), _unit(rng, 50, 8))  # now more than a quarter: a whole write is due
    assert vi.changes() is None


# --------------------------------------------------------------------------------------- through the store
def _files(fp, x, start, n, tag=1):
    return [EmbeddedFile(FileEntry(f"/synthetic/{i:06d}.jpg", "image", tag, tag), f"{i:08d}-{tag}", fp,
                         [({"width": 1, "height": 1}, None)], x[i % len(x)][None]) for i in range(start, start + n)]


@pytest.fixture
def synthetic(tmp_path, tiny_space_dir):
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    rng = np.random.default_rng(5)
    x = _clustered(rng, 4000, eng.dim)
    yield eng, x
    eng.close()


def _vector_files(root):
    return sorted(p.name for p in root.iterdir() if p.name.startswith("vectors"))


def _answers(eng, q):
    return eng.store.vectors.search(q, 10)[1]


def test_a_small_change_writes_a_small_delta_and_readers_apply_it(synthetic):
    eng, x = synthetic
    fp = eng.space.fingerprint
    eng.add_embeddings(_files(fp, x, 0, 3000))
    base = eng.store.segments()
    assert len(base) == 1 and base[0].endswith(".faiss")
    base_bytes = (eng.path / base[0]).stat().st_size
    reader = mmr.Engine(eng.path, readonly=True)
    q = x[:5]
    reader_vectors = reader.store.vectors

    eng.add_embeddings(_files(fp, x, 0, 20, tag=2))  # 20 files changed
    eng.remove([f"/synthetic/{i:06d}.jpg" for i in range(2990, 3000)])  # 10 removed
    segs = eng.store.segments()
    assert segs[0] == base[0] and len(segs) == 3 and all(s.endswith(".delta") for s in segs[1:])
    assert _vector_files(eng.path) == sorted(segs)  # nothing else on disk
    delta_bytes = sum((eng.path / s).stat().st_size for s in segs[1:])
    assert delta_bytes < 20 * (eng.dim * 4 + 16) + 2000 < base_bytes / 50  # the change, not the index

    reader.search_vector(q[0], k=3)  # a search picks up the commits
    assert reader.store.vectors is reader_vectors  # caught up by applying the deltas, not by reloading
    fresh = mmr.Engine(eng.path, readonly=True)
    np.testing.assert_array_equal(_answers(reader, q), _answers(eng, q))
    np.testing.assert_array_equal(_answers(fresh, q), _answers(eng, q))
    assert reader.check()["consistent"] and fresh.check()["consistent"]
    assert reader.stats()["vectors"] == 2990
    reader.close()
    fresh.close()


def test_deltas_are_merged_as_they_grow_and_at_compact(synthetic, monkeypatch, capsys):
    from mmretrieval.cli import main

    eng, x = synthetic
    fp = eng.space.fingerprint
    eng.add_embeddings(_files(fp, x, 0, 400))
    monkeypatch.setattr(segments, "MAX_DELTAS", 3)
    names = []
    for step in range(5):
        eng.add_embeddings(_files(fp, x, 400 + 10 * step, 10))
        names.append(eng.store.segments())
    assert [len(s) for s in names] == [2, 3, 4, 1, 2]  # the fourth delta was a new base instead
    assert names[3][0] != names[0][0] and _vector_files(eng.path) == sorted(names[4])
    # past a quarter of the base's size, the base is rewritten too
    eng.add_embeddings(_files(fp, x, 500, 150))
    assert len(eng.store.segments()) == 1
    eng.add_embeddings(_files(fp, x, 700, 10))
    q = x[:5]
    before = _answers(eng, q)
    eng.close()
    assert main(["compact", "--index", str(eng.path)]) == 0
    assert "1 delta(s) merged" in capsys.readouterr().out
    after = mmr.Engine(eng.path, readonly=True)
    assert len(after.store.segments()) == 1 and _vector_files(eng.path) == after.store.segments()
    np.testing.assert_array_equal(_answers(after, q), before)
    assert after.check()["consistent"] and after.stats()["vectors"] == 610
    after.close()


def test_an_index_written_before_segments_keeps_working(synthetic):
    """Indexes name one whole file in `vectors_file` (and IVF ones hold it under an id map)."""
    eng, x = synthetic
    fp = eng.space.fingerprint
    eng.add_embeddings(_files(fp, x, 0, 300))
    cat = eng.store.catalog
    name = eng.store.segments()[0]
    with cat.transaction():  # the old layout
        cat.delete_meta("vectors_segments")
        cat.set_meta("vectors_file", name)
    eng.close()
    eng = mmr.Engine(eng.path)
    assert eng.store.segments() == [name] and eng.stats()["vectors"] == 300
    eng.add_embeddings(_files(fp, x, 300, 5))
    assert eng.store.segments()[0] == name and len(eng.store.segments()) == 2
    assert eng.store.catalog.get_meta("vectors_file") is None  # the list of segments names them now
    assert mmr.Engine(eng.path, readonly=True).check()["consistent"]
    eng.close()


_KILL_WRITER = r"""
import sys, numpy as np
import mmretrieval as mmr
from mmretrieval.ingest.embed import EmbeddedFile
from mmretrieval.ingest.walk import FileEntry
idx, seed = sys.argv[1], int(sys.argv[2])
eng = mmr.Engine(idx)
rng = np.random.default_rng(seed)
fp, d = eng.space.fingerprint, eng.dim
def files(paths, tag):
    x = rng.standard_normal((len(paths), d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return [EmbeddedFile(FileEntry(p, "image", tag, tag), f"{p}-{tag}", fp, [({"width": 1, "height": 1}, None)], x[k:k+1])
            for k, p in enumerate(paths)]
step = 0
print("ready", flush=True)
while True:  # changes, additions and removals, one checkpoint per file: killed at a random moment
    step += 1
    known = sorted(eng.store.catalog.files())
    changed = [known[i] for i in rng.choice(len(known), 20, replace=False)]
    new = [f"/synthetic/s{seed}-{step}-{k}.jpg" for k in range(30)]
    eng.add_embeddings(files(changed, 100 + step) + files(new, 1), checkpoint_seconds=0)
    eng.remove([known[i] for i in rng.choice(len(known), 10, replace=False) if known[i] not in changed])
    if step % 7 == 0:
        eng.compact()
"""


def test_kill_during_delta_writes_and_compaction_leaves_a_consistent_index(tmp_path, tiny_space_dir):
    from mmretrieval.synth import shape_image

    shape_image("red", "circle", size=64).save(tmp_path / "red.png")
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    eng.index([tmp_path / "red.png"], index_type="ivf-flat")  # pinned: the IVF that removes in place
    rng = np.random.default_rng(6)
    x = _unit(rng, 3000, eng.dim)
    eng.add_embeddings(_files(eng.space.fingerprint, x, 0, 3000))
    assert eng.stats()["index_type"] == "ivf-flat"
    eng.close()
    script = tmp_path / "writer.py"
    script.write_text(_KILL_WRITER)
    pick = random.Random(7)
    kills, seen_deltas, states = 0, 0, set()
    for attempt in range(8):
        p = subprocess.Popen([sys.executable, str(script), str(tmp_path / "idx"), str(attempt)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert p.stdout.readline() == b"ready\n", p.stderr.read().decode()[-3000:]  # imports and space loaded
        time.sleep(pick.uniform(0.05, 1.5))
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        p.wait()
        assert p.returncode == -signal.SIGKILL, p.stderr.read().decode()[-3000:]
        reader = mmr.Engine(tmp_path / "idx", readonly=True)
        rep = reader.check()
        assert rep["consistent"], rep  # the committed state agrees, without any repair
        seen_deltas += sum(n.endswith(".delta") for n in rep["vector_files"])
        assert reader.stats()["index_type"] == "ivf-flat"
        states.add((tuple(rep["vector_files"]), rep["items"]))
        reader.close()
    print("after each kill (deltas, items):", sorted((len(f) - 1, n) for f, n in states))
    assert kills == 8 and seen_deltas >= 4 and len(states) == 8  # every run got work committed before its kill
    eng = mmr.Engine(tmp_path / "idx")
    assert eng.check(repair=True)["repaired"] == {"orphan_vectors": 0, "items_without_vector": 0, "files_reset": 0,
                                                  "exact_rows_from_codes": 0}
    assert _vector_files(eng.path) == sorted(eng.store.segments())  # killed runs' files were cleaned up
    eng.close()
