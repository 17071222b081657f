"""Indexing in three parts: plan (walk + diff), embed (no catalog state: runs in another process), commit
(the single writer). Vectors embedded in another process and committed with `Engine.add_embeddings`
give the same index as `Engine.index`."""
from __future__ import annotations

import multiprocessing as mp
from dataclasses import replace

import numpy as np
import pytest

import mmretrieval as mmr
from mmretrieval.errors import SpaceMismatchError, UsageError
from mmretrieval.ingest.embed import EmbedTask, run_embed_task
from mmretrieval.ingest.plan import make_plan
from media import make_media


def _items(eng):
    cat = eng.store.catalog
    rows = cat.items(cat.item_ids().tolist())
    vecs = eng.store.vectors.reconstruct(np.array(sorted(rows), np.int64))
    by_key = {(r.path, str(sorted(r.locator.items()))): vecs[k] for k, r in enumerate(rows[i] for i in sorted(rows))}
    return by_key


def test_embed_in_another_process_then_commit_equals_the_local_index(tmp_path, tiny_space_dir):
    media = make_media(tmp_path / "media")
    root = media["red"].parent.parent
    local = mmr.Engine(tmp_path / "local", model=str(tiny_space_dir))
    rep_local = local.index([root])

    remote = mmr.Engine(tmp_path / "remote", model=str(tiny_space_dir))
    plan = make_plan(remote.store.catalog, [root])  # the driver plans
    assert remote.store.catalog.files() == {}       # planning writes nothing
    half = len(plan.todo) // 2
    tasks = [EmbedTask(space=remote.spec.to_dict(), precision=dict(remote.precision), entries=tuple(part),
                       reusable=plan.reusable, batch_size=8, workers=1)
             for part in (plan.todo[:half], plan.todo[half:])]
    with mp.get_context("spawn").Pool(1) as pool:  # a fresh interpreter: nothing shared but the task
        embedded = [f for part in pool.map(run_embed_task, tasks) for f in part]
    rep = remote.add_embeddings(embedded)
    assert rep.added == rep_local.added and rep.files_new == rep_local.files_new
    assert sorted(rep.skipped) == sorted(s for s in rep_local.skipped if s[0] in {e.path for e in plan.todo})
    a, b = _items(local), _items(remote)
    assert a.keys() == b.keys()
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-6
    assert remote.check()["consistent"]
    again = remote.index([root])  # the local path agrees that nothing is left to do
    assert again.items_added == 0 and again.files_unchanged == rep_local.files_new + len(rep_local.skipped)


def test_add_embeddings_checks_the_space_and_the_vectors(tmp_path, tiny_space_dir, tiny_space_noaudio_dir):
    media = make_media(tmp_path / "media")
    root = media["red"].parent
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    other = mmr.Engine(tmp_path / "other", model=str(tiny_space_noaudio_dir))
    plan = make_plan(other.store.catalog, [root])
    files = run_embed_task(EmbedTask(space=other.spec.to_dict(), precision=dict(other.precision),
                                     entries=tuple(plan.todo)))
    with pytest.raises(SpaceMismatchError, match="were made in space"):
        eng.add_embeddings(files)
    assert eng.stats()["items_total"] == 0  # nothing half-committed
    good = next(f for f in files if f.error is None)
    with pytest.raises(UsageError, match="L2-normalised"):
        eng.add_embeddings([replace(good, fingerprint=eng.space.fingerprint, vectors=good.vectors * 2)])
    with pytest.raises(UsageError, match="expected float32 vectors of shape"):
        eng.add_embeddings([replace(good, fingerprint=eng.space.fingerprint, vectors=good.vectors[:, :3])])
