"""A reader maps an IVF base's lists instead of loading them, and replays the commits since beside them: its
answers (plain, filtered, range), ids, counts and vectors are the writer's, through deltas, removals, replaced
files and a compaction."""
from __future__ import annotations

import numpy as np
import pytest

import mmretrieval as mmr
from mmretrieval.index.mapped import MappedIndex
from mmretrieval.ingest.embed import EmbeddedFile
from mmretrieval.ingest.walk import FileEntry


def _clustered(rng, n, d):
    c = rng.standard_normal((40, d))
    x = c[rng.integers(40, size=n)] + 0.4 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _same(reader, writer, q, rng):
    r, w = reader.store.vectors, writer.store.vectors
    tol = 1e-5
    assert isinstance(r, MappedIndex) and r.base.mapped and "memory-mapped" in r.description
    assert r.ntotal == w.ntotal and np.array_equal(np.sort(r.ids()), np.sort(w.ids()))
    ids = w.ids()
    for allowed in (None, rng.choice(ids, ids.size // 50, replace=False), rng.choice(ids, ids.size * 3 // 4, replace=False)):
        rs, ri = r.search(q, 10, allowed)
        ws, wi = w.search(q, 10, allowed)
        # The lists probed are the same; the vectors added since the base are searched exhaustively beside them,
        # where the writer finds them only in the lists it probes: the reader's hits are the writer's or better.
        assert (rs >= ws - tol).all()
        same = [(a, b) for rsr, rir, wsr, wir in zip(rs, ri, ws, wi) for a, i in zip(rsr, rir)
                for b, j in zip(wsr, wir) if i == j]
        assert len(same) >= 0.95 * ri.size and max(abs(a - b) for a, b in same) < tol
        if allowed is not None:
            assert np.isin(ri[ri >= 0], allowed).all()
    for (ri, rs), (wi, ws) in zip(r.range_search(q[:3], 0.7), w.range_search(q[:3], 0.7)):
        np.testing.assert_array_equal(ri, wi)
        np.testing.assert_allclose(rs, ws, atol=tol)
    some = rng.choice(ids, 200, replace=False)
    np.testing.assert_allclose(r.reconstruct(some), w.reconstruct(some), atol=tol)
    (_, rv), (_, wv) = next(r.iter_vectors(some)), next(w.iter_vectors(some))
    np.testing.assert_allclose(rv, wv, atol=tol)
    assert reader.check()["consistent"]


@pytest.mark.parametrize("kind", ["ivf-fp16", "ivf-pq"])
def test_a_reader_maps_the_lists_and_answers_as_the_writer(tmp_path, tiny_space_dir, kind):
    from mmretrieval.synth import shape_image

    shape_image("red", "circle", size=64).save(tmp_path / "red.png")
    writer = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    writer.index([tmp_path / "red.png"], index_type=kind)
    rng = np.random.default_rng(1)
    x = _clustered(rng, 3200, writer.dim)
    fp = writer.space.fingerprint

    def files(idx, tag=1):
        return [EmbeddedFile(FileEntry(f"/synthetic/{i:06d}.jpg", "image", tag, tag), f"{i:08d}-{tag}", fp,
                             [({"width": 1, "height": 1}, None)], x[(i * tag) % len(x)][None]) for i in idx]

    writer.add_embeddings(files(range(3000)))
    assert writer.stats()["index_type"] == kind
    reader = mmr.Engine(tmp_path / "idx", readonly=True)
    q = _clustered(rng, 20, writer.dim)
    reader.search_vector(q[0], k=1)
    _same(reader, writer, q, rng)
    for step in range(3):  # replaced files, new ones, removed ones: deltas the reader replays beside the lists
        writer.add_embeddings(files(range(step * 20, step * 20 + 20), tag=2 + step) +
                              files(range(3000 + step * 50, 3050 + step * 50)))
        writer.remove([f"/synthetic/{i:06d}.jpg" for i in range(2900 - step * 10, 2910 - step * 10)])
        reader.search_vector(q[0], k=1)  # catches up
        _same(reader, writer, q, rng)
    assert len(writer.store.segments()) > 1 and reader.store.vectors.side.ntotal > 0
    writer.compact()
    reader.search_vector(q[0], k=1)  # a new base: mapped afresh
    assert reader.store.vectors.side.ntotal == 0
    _same(reader, writer, q, rng)
    reader.close()
    writer.close()
