"""`mmr index --ray` on a real multi-node Ray cluster inside this test process: a 0-CPU head and two 1-CPU
worker nodes, all bound to 127.0.0.1. The distributed index must equal the local one (catalog rows and ids,
vectors, top-10 lists), incremental edits must give the same reports, and a driver killed before its commit
or a worker node lost mid-run must recover. Marked `distributed` (`pytest -m "not distributed"` skips them
for a quick local loop; CI runs them)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

# Before Ray is imported (it reads them then): nodes bind to loopback, not the machine's network address; no
# usage reports; no token to hand around.
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
os.environ.update(RAY_ENV)
pytest.importorskip("ray.data")
pq = pytest.importorskip("pyarrow.parquet")

import mmretrieval as mmr
from mmretrieval.options import ItemOptions  # noqa: E402
from mmretrieval.errors import SpaceMismatchError, UsageError  # noqa: E402
from mmretrieval.ingest.distributed import EncoderActor, RayOptions  # noqa: E402
from mmretrieval.shards import import_shards  # noqa: E402
from mmretrieval.synth import write_demo_folder  # noqa: E402

from video_files import Scene, Sound, VideoSpec, write_video  # noqa: E402

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(240)]
DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo"
OPTIONS = dict(cpus_per_actor=0.5, files_per_shard=4)  # 0.5: two actors per 1-CPU node


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "node_ip_address": "127.0.0.1",
                                                        "include_dashboard": False})
    workers = [c.add_node(num_cpus=1, node_ip_address="127.0.0.1") for _ in range(2)]
    ray.init(address=c.address, log_to_driver=False)
    yield c, [w.node_id for w in workers]
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """The demo folder + a generated one, a copy (same content twice), a broken image, an EXIF-tagged photo."""
    from PIL import Image

    root = tmp_path_factory.mktemp("lib")
    shutil.copytree(DEMO, root / "demo")
    write_demo_folder(root / "gen", seed=3)
    shutil.copy(root / "demo" / "images" / "red-circle.png", root / "gen" / "same-as-red-circle.png")
    (root / "gen" / "broken.png").write_bytes(b"\x89PNG not really")
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2018:02:03 04:05:06"
    exif[270] = "lighthouse at dusk"
    Image.open(root / "demo" / "images" / "red-circle.png").convert("RGB").save(root / "gen" / "tagged.jpg", exif=exif)
    # A video: its frame samples become scenes on the worker that embeds it, beside its sound and subtitles.
    write_video(root / "gen" / "clip.mkv", VideoSpec([Scene(3, "red", "circle"), Scene(3, "blue", "square")],
                                                     sounds=[Sound(3.5, 2.0, 220.0)],
                                                     subtitles=[(1.0, 2.0, "a red circle rolls")]))
    return root


def snapshot(eng: mmr.Engine):
    cat = eng.store.catalog
    files = sorted((r.id, r.path, r.modality, r.size, r.hash, r.status, r.error) for r in cat.files().values())
    ids = cat.item_ids()
    rows = cat.items(ids.tolist())
    items = [(i, rows[i].path, rows[i].ordinal, json.dumps(rows[i].locator, sort_keys=True), rows[i].text,
              rows[i].date) for i in ids.tolist()]
    return files, items, eng.store.vectors.reconstruct(ids)


def assert_same(a: mmr.Engine, b: mmr.Engine) -> None:
    fa, ia, va = snapshot(a)
    fb, ib, vb = snapshot(b)
    assert fa == fb
    assert ia == ib  # same ids, paths, passages, dates
    np.testing.assert_allclose(va, vb, atol=1e-6)
    for q in ("a red circle", "a high rising beep", "lighthouse"):
        assert [(h.id, h.path) for h in a.search(q, k=10)] == [(h.id, h.path) for h in b.search(q, k=10)]
    assert b.check()["consistent"]


def report_counts(r) -> dict:
    d = r.to_dict()
    return {k: d[k] for k in ("added", "files_new", "files_changed", "files_moved", "files_copied", "files_removed",
                              "files_unchanged", "items_removed", "skipped", "still_skipped", "notes")}


def test_ray_index_equals_local_and_both_nodes_work(cluster, library, tmp_path):
    c, workers = cluster
    local = mmr.Engine(tmp_path / "local", model="tiny")
    r_local = local.index([library])
    dist = mmr.Engine(tmp_path / "ray", model="tiny")
    r_dist = dist.index([library], ray=RayOptions(keep_shards=True, **OPTIONS))
    assert report_counts(r_dist) == report_counts(r_local)
    assert len(r_dist.skipped) == 1 and r_dist.files_new == sum(1 for p in library.rglob("*") if p.is_file()) - 1
    s = r_dist.distributed
    assert s["files_embedded"] == r_local.files_new + 1 and s["files_from_staged"] == 0
    assert set(s["nodes"]) == set(workers)  # both worker nodes embedded shards; the 0-CPU head none
    assert s["shards"] == -(-s["files_embedded"] // 4)
    assert_same(local, dist)
    assert [Path(h.path).name for h in dist.search("lighthouse", types=["image"], mode="keyword")] == ["tagged.jpg"]

    # The staged shards are clip-retrieval's layout, rows aligned, and `mmr import` rebuilds the same index.
    staging = tmp_path / "ray" / "staging"
    for modality, folder in (("image", "img_emb"), ("text", "text_emb"), ("audio", "audio_emb")):
        embs = sorted((staging / modality / folder).glob("*.npy"))
        metas = sorted((staging / modality / "metadata").glob("*.parquet"))
        assert len(embs) == len(metas) > 1  # autofaiss pairs them by sorted name
        for emb, meta in zip(embs, metas):
            assert emb.stem.split("_", 2)[2] == meta.stem.split("_", 1)[1]
            table = pq.read_table(meta)
            assert np.load(emb).shape[0] == table.num_rows
            assert (table.column_names[0] == "image_path") == (modality == "image")
    try:
        from embedding_reader import EmbeddingReader  # what autofaiss and clip-retrieval read shards with
    except ImportError:
        pass
    else:
        reader = EmbeddingReader(str(staging / "image" / "img_emb"), file_format="parquet_npy",
                                 embedding_column="embedding", meta_columns=["image_path"],
                                 metadata_folder=str(staging / "image" / "metadata"))
        assert reader.count == r_dist.added["image"] and reader.dimension == dist.dim
    imported, _ = import_shards(staging, tmp_path / "imported")
    assert sorted(r[1:5] for r in snapshot(imported)[1]) == sorted(r[1:5] for r in snapshot(dist)[1])
    for e in (local, dist, imported):
        e.close()


def test_incremental_edits_match_the_local_path(cluster, library, tmp_path):
    lib = tmp_path / "lib"
    shutil.copytree(library, lib)
    local, dist = mmr.Engine(tmp_path / "local", model="tiny"), mmr.Engine(tmp_path / "ray", model="tiny")
    local.index([lib])
    dist.index([lib], ray=RayOptions(**OPTIONS))
    # add, modify, delete, rename (a move), copy
    write_demo_folder(lib / "added", seed=9)
    (lib / "demo" / "docs").joinpath("notes.txt").write_text("A note about a green triangle and a low beep.\n")
    with open(lib / "gen" / "docs" / "captions.md", "a") as f:
        f.write("A purple hexagon.\n")
    (lib / "gen" / "images" / "blue-square.png").unlink()
    (lib / "demo" / "images" / "green-triangle.png").rename(lib / "demo" / "images" / "renamed.png")
    shutil.copy(lib / "gen" / "images" / "red-circle.png", lib / "demo" / "copy.png")
    r_local = local.index([lib])
    r_dist = dist.index([lib], ray=RayOptions(**OPTIONS))
    assert report_counts(r_dist) == report_counts(r_local)
    assert (r_dist.files_moved, r_dist.files_removed, r_dist.files_changed) == (1, 1, 1) and r_dist.files_copied >= 1
    assert_same(local, dist)
    assert not (tmp_path / "ray" / "staging").exists()  # committed: the staged shards are gone
    local.close()
    dist.close()


def test_a_migration_embeds_on_ray_as_it_does_here(cluster, library, tmp_path, tiny_space_dir):
    _, workers = cluster
    local, dist = mmr.Engine(tmp_path / "local", model="tiny"), mmr.Engine(tmp_path / "ray", model="tiny")
    for e in (local, dist):
        e.index([library])
    r_local = local.migrate(str(tiny_space_dir))
    r_dist = dist.migrate(str(tiny_space_dir), ray=RayOptions(**OPTIONS))
    assert r_dist.switched and dist.spec.name == "test-tiny" and r_dist.indexed == r_local.indexed
    assert r_dist.distributed and set(r_dist.distributed["nodes"]) == set(workers)
    assert r_local.distributed is None
    assert_same(local, dist)
    local.close()
    dist.close()


def test_driver_killed_before_commit_resumes_from_its_shards(cluster, library, tmp_path):
    c, _ = cluster
    idx = tmp_path / "ray"
    mmr.Engine(idx, model="tiny").close()
    env = {**os.environ, **RAY_ENV, "MMR_DEBUG": "1"}
    cmd = [sys.executable, "-m", "mmretrieval.cli", "index", str(library), "--index", str(idx), "--ray", c.address,
           "--ray-cpus-per-actor", "0.5", "--files-per-shard", "1", "--checkpoint-seconds", "100000"]
    err = open(tmp_path / "driver.err", "w+")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    files = idx / "staging" / "files"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and len(list(files.glob("*.parquet"))) < 6:
        time.sleep(0.05)
    assert proc.poll() is None, f"the driver ended first: {(tmp_path / 'driver.err').read_text()[-3000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    staged = len(list(files.glob("files_*.parquet")))
    assert staged >= 6
    eng = mmr.Engine(idx)
    assert eng.stats()["items_total"] == 0  # nothing was committed
    report = eng.index([library], ray=RayOptions(**OPTIONS))
    assert report.distributed["files_from_staged"] == staged  # not embedded again
    assert report.distributed["files_embedded"] == report.files_new + 1 - staged
    local = mmr.Engine(tmp_path / "local", model="tiny")
    r_local = local.index([library])
    assert report_counts(report) == report_counts(r_local)
    fa, ia, va = snapshot(local)
    fb, ib, vb = snapshot(eng)
    # staged files are committed first, so ids may be assigned in another order; the content is the same
    assert sorted(f[1:] for f in fa) == sorted(f[1:] for f in fb)
    by_key = lambda items, v: {(r[1], r[2]): (r[3:], x) for r, x in zip(items, v)}  # noqa: E731
    ka, kb = by_key(ia, va), by_key(ib, vb)
    assert ka.keys() == kb.keys()
    for k in ka:
        assert ka[k][0] == kb[k][0]
        np.testing.assert_allclose(ka[k][1], kb[k][1], atol=1e-6)
    assert eng.check()["consistent"]
    eng.close()
    local.close()


def test_a_worker_node_lost_mid_run_is_survived(cluster, library, tmp_path):
    c, _ = cluster
    extra = c.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    c.wait_for_nodes()
    dist = mmr.Engine(tmp_path / "ray", model="tiny")
    files = tmp_path / "ray" / "staging" / "files"
    removed = threading.Event()

    def remove_when_running() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(files.glob("*.parquet"))) < 3:
            time.sleep(0.05)
        c.remove_node(extra, allow_graceful=False)
        removed.set()

    t = threading.Thread(target=remove_when_running)
    t.start()
    report = dist.index([library], ray=RayOptions(cpus_per_actor=0.5, files_per_shard=1, actors=6))
    t.join()
    assert removed.is_set()
    local = mmr.Engine(tmp_path / "local", model="tiny")
    r_local = local.index([library])
    assert report_counts(report) == report_counts(r_local)
    assert_same(local, dist)
    local.close()
    dist.close()


def test_a_node_in_another_space_stops_the_run_with_our_error(cluster, library, tmp_path):
    from mmretrieval.ingest.distributed import RayEmbedder
    from mmretrieval.ingest.plan import make_plan
    from mmretrieval.ingest.staging import Staging

    eng = mmr.Engine(tmp_path / "idx", model="tiny")
    other = {**eng.store.space_record(), "fingerprint": "0" * 16}  # what the actors will not load
    embed = RayEmbedder(eng.spec.to_dict(), eng.precision, Staging(tmp_path / "staging", other, ItemOptions()),
                        RayOptions(**OPTIONS))
    with pytest.raises(SpaceMismatchError, match="not the index's 0000000000000000"):
        list(embed.stream(make_plan(eng.store.catalog, [str(library / "demo")])))
    assert not (tmp_path / "staging" / "files").exists()
    eng.close()


def test_an_actor_refuses_another_space_and_ray_options_are_checked(tmp_path):
    eng = mmr.Engine(tmp_path / "idx", model="tiny")
    with pytest.raises(SpaceMismatchError, match="not the index's"):
        EncoderActor(eng.spec.to_dict(), eng.precision, "0" * 16, 8, 1, False, 1, {})
    for bad in (dict(actors=0), dict(cpus_per_actor=0), dict(files_per_shard=0), dict(gpus_per_actor=-1)):
        with pytest.raises(UsageError):
            RayOptions(**bad)
    from mmretrieval.cli import main

    assert main(["index", str(DEMO), "--index", str(tmp_path / "idx"), "--keep-shards"]) == 2
    eng.close()


def test_without_ray_installed_the_error_says_what_to_install(tmp_path, monkeypatch, library):
    monkeypatch.setitem(sys.modules, "ray", None)
    eng = mmr.Engine(tmp_path / "idx", model="tiny")
    with pytest.raises(UsageError, match=r"mmretrieval\[distributed\]"):
        eng.index([library / "demo"], ray=RayOptions())
    assert eng.stats()["items_total"] == 0
    eng.close()


def test_a_shard_written_but_not_yet_listed_is_found_again(tmp_path, tiny_space_dir):
    """A run killed between a shard's files table and the manifest that lists it: the shard is whole (its files
    table is written last) and is used, not embedded again."""
    from mmretrieval.ingest.embed import Embedder
    from mmretrieval.ingest.staging import Staging
    from mmretrieval.ingest.walk import FileEntry

    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    media = tmp_path / "media"
    media.mkdir()
    entries = []
    for i, text in enumerate(["a red circle", "a blue star"]):
        p = media / f"{i}.txt"
        p.write_text(text)
        entries.append(FileEntry(str(p), "text", p.stat().st_size, p.stat().st_mtime_ns))
    files = list(Embedder(eng.space).stream(entries))
    record = eng.store.space_record()
    stage = Staging(tmp_path / "staging", record, ItemOptions())
    stage.write("a", files[:1])
    manifest = (tmp_path / "staging" / "manifest.json").read_text()
    stage.write("b", files[1:])
    (tmp_path / "staging" / "manifest.json").write_text(manifest)  # as if killed before listing "b"
    again = Staging(tmp_path / "staging", record, ItemOptions())
    assert again.shards == ["a", "b"]
    found = again.find(entries[1])
    assert found is not None and np.array_equal(found.vectors, files[1].vectors)
    assert again.parts["text"] == ["text/text_emb/text_emb_a.npy", "text/text_emb/text_emb_b.npy"]
    eng.close()
