"""Moving an index to another space (`Engine.migrate`, `mmr migrate`): an estimate from a measured sample, the new
space built beside the old while searches go on, notes carried, the old space kept and switched back to without
encoding, a kill and a resume, a switch cut short and finished by the next open, and refusals before any work."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

import mmretrieval as mmr
from mmretrieval import switch

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo"


@pytest.fixture(scope="module")
def demo_index(tmp_path_factory):
    idx = tmp_path_factory.mktemp("migrate") / "idx"
    with mmr.Engine(idx, model="tiny") as eng:
        eng.index([DEMO])
        eng.remember("Ann's logo is a red circle.", user="ann")
    return idx


@pytest.fixture
def index(demo_index, tmp_path):
    shutil.copytree(demo_index, tmp_path / "idx")
    return tmp_path / "idx"


@contextmanager
def searching_throughout(reader):
    """A thread searching `reader` in a loop while the block runs: (the hit counts, the errors)."""
    answers, failures, stop = [], [], threading.Event()

    def search():
        while not stop.is_set():
            try:
                answers.append(len(reader.search("a red circle", types=["image"], k=3)))
            except Exception as e:  # noqa: BLE001
                failures.append(repr(e))

    t = threading.Thread(target=search)
    t.start()
    try:
        yield answers, failures
    finally:
        stop.set()
        t.join()


def test_there_and_back_with_searches_throughout(index, tiny_space_dir, monkeypatch):
    eng = mmr.Engine(index)
    old_fp, files = eng.store.space_record()["fingerprint"], eng.stats()["files_indexed"]
    reader = mmr.Engine(index, readonly=True)  # another process's view: a server, say
    with searching_throughout(reader) as (answers, failures):
        estimate = eng.migrate(str(tiny_space_dir), dry_run=True)
        report = eng.migrate(str(tiny_space_dir))
    assert failures == [] and answers and set(answers) == {3}
    assert estimate.estimate_seconds is not None and set(estimate.per_modality) == {"audio", "image", "text"}
    assert estimate.sampled == 1 + 3 * 8 + 1 + 3 * 8 + 24 and not estimate.switched and report.switched  # audio,
    # text: a file to warm up, then 8 and 16 timed; image: its 24 files are fewer than that, all in one part
    new_fp = eng.store.space_record()["fingerprint"]
    assert new_fp == report.fingerprint != old_fp and eng.spec.name == "test-tiny"
    assert eng.stats()["files_indexed"] == files and eng.check()["consistent"]
    assert [m.text for m in eng.memories()] == ["Ann's logo is a red circle."] and report.memories == 1
    assert eng.recall("a red circle", user="ann")[0].text == "Ann's logo is a red circle."
    assert reader.search("a red circle", k=1) and reader.spec.name == "test-tiny"  # followed the switch
    assert [p["fingerprint"] for p in eng.stats()["previous_spaces"]] == [old_fp]

    # back: no file is encoded; a note made in the new space comes along
    eng.remember("Bob's logo is a blue square.", user="bob")
    from mmretrieval.ingest.embed import Embedder

    monkeypatch.setattr(Embedder, "stream", lambda *a, **k: (_ for _ in ()).throw(AssertionError("encoded")))
    back = eng.migrate_back()
    assert back["fingerprint"] == old_fp == eng.store.space_record()["fingerprint"] and back["memories"] == 1
    assert eng.search("a red circle", types=["image"], k=1)[0].path.endswith("red-circle.png")
    assert {m.text for m in eng.memories()} == {"Ann's logo is a red circle.", "Bob's logo is a blue square."}
    assert eng.check()["consistent"] and eng.drop_old_spaces() > 0 and eng.stats()["previous_spaces"] == []
    reader.close()
    eng.close()


def test_a_writer_opened_before_another_process_switched_writes_to_the_new_space(index, tiny_space_dir):
    late = mmr.Engine(index)  # a server's writer, say, opened before the switch
    with mmr.Engine(index) as eng:
        eng.migrate(str(tiny_space_dir))
    note = late.remember("written after the switch")
    assert late.spec.name == "test-tiny" and note.memory.text == "written after the switch"
    late.close()
    with mmr.Engine(index, readonly=True) as eng:
        assert "written after the switch" in {m.text for m in eng.memories()} and eng.check()["consistent"]


def test_refused_before_any_work(index, tiny_space_noaudio_dir, tiny_space_dir):
    with mmr.Engine(index) as eng:
        with pytest.raises(mmr.UsageError, match="no tower for audio: the index holds 27 audio"):
            eng.migrate(str(tiny_space_noaudio_dir))
        assert not (index / switch.MIGRATION_DIR).exists()
        with pytest.raises(mmr.UsageError, match="already in space 'tiny'"):
            eng.migrate("tiny")
        eng.migrate(str(tiny_space_dir), dry_run=True)  # a migration under way ...
        with pytest.raises(mmr.UsageError, match="under way"):
            eng.migrate(str(tiny_space_noaudio_dir))      # ... is finished or abandoned before another
        assert eng.stats()["migration"]["files_done"] == 74
        assert eng.abandon_migration() and eng.stats()["migration"] is None
        with pytest.raises(mmr.UsageError, match="no earlier space"):
            eng.migrate_back()


def test_a_kill_mid_migration_and_a_resume(tmp_path, tiny_space_dir):
    from mmretrieval.synth import shape_image

    lib = tmp_path / "lib"
    lib.mkdir()
    for k in range(160):
        shape_image(["red", "green", "blue", "yellow"][k % 4], ["circle", "square", "star"][k % 3],
                    size=80 + k).save(lib / f"{k}.png")
    idx = tmp_path / "idx"
    with mmr.Engine(idx, model="tiny") as eng:
        eng.index([lib])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "mmretrieval.cli", "migrate", "--to", str(tiny_space_dir),
                          "--index", str(idx)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:  # the estimate is printed before the long part: killed as it starts (a delay here once
        if line.startswith("estimate:"):  # let a fast run finish and switch before the kill landed)
            os.kill(p.pid, signal.SIGKILL)
            break
    p.wait()
    with mmr.Engine(idx, readonly=True) as eng:  # the old space answers, whole
        assert eng.spec.name == "tiny" and eng.stats()["files_indexed"] == 160 and eng.check()["consistent"]
        assert 0 < eng.stats()["migration"]["files_done"] <= 160
    with mmr.Engine(idx) as eng:
        report = eng.migrate(str(tiny_space_dir))
        assert report.switched and eng.spec.name == "test-tiny" and eng.check()["consistent"]
        assert eng.stats()["files_indexed"] == 160 and report.indexed < 160  # what the killed run made was kept


def test_a_switch_cut_short_is_finished_by_the_next_open(index, tiny_space_dir):
    with mmr.Engine(index) as eng:
        eng.migrate(str(tiny_space_dir), dry_run=True)
        eng.migrate(str(tiny_space_dir))  # the new space is in place, the old under previous/
        new_fp = eng.store.space_record()["fingerprint"]
        old = eng.stats()["previous_spaces"][0]
    # switch back by hand, stopped after the current files went out: what a kill there leaves
    root, keep = index, index / switch.PREVIOUS_DIR / new_fp
    plan = {"incoming": str(Path(old["path"]).relative_to(root)), "keep": str(keep.relative_to(root)),
            "out": switch.index_files(root), "in": switch.index_files(Path(old["path"])), "phase": "out"}
    switch._write(root, plan)
    keep.mkdir(parents=True)
    for name in plan["out"]:
        os.replace(root / name, keep / name)
    with mmr.Engine(index, readonly=True) as eng:  # no writer holds the lock: the open finishes the switch
        assert eng.store.space_record()["fingerprint"] == old["fingerprint"] and eng.check()["consistent"]
        assert eng.search("a red circle", types=["image"], k=1)[0].path.endswith("red-circle.png")
    assert not (root / switch.JOURNAL).exists() and not Path(old["path"]).exists()


def test_mmr_migrate_from_the_shell(index, tiny_space_dir, capsys):
    from mmretrieval.cli import main

    i = ["--index", str(index)]
    assert main(["migrate", "--to", str(tiny_space_dir), "--dry-run", *i]) == 0
    out = capsys.readouterr().out
    assert "file(s) to index in test-tiny" in out and "estimate: ~" in out and "ms/file" in out
    assert main(["info", *i]) == 0 and "migration:    to test-tiny" in capsys.readouterr().out
    assert main(["migrate", "--to", str(tiny_space_dir), *i]) == 0
    assert "switched to test-tiny" in capsys.readouterr().out
    assert main(["info", *i]) == 0 and "kept:         tiny" in capsys.readouterr().out
    assert main(["migrate", "--back", *i]) == 0 and "switched back to tiny" in capsys.readouterr().out
    assert main(["migrate", "--drop-old", *i]) == 0 and "freed" in capsys.readouterr().out


def _shapes(folder: Path, n: int, offset: int = 0) -> None:
    from mmretrieval.synth import shape_image

    folder.mkdir(exist_ok=True)
    for k in range(offset, offset + n):
        shape_image(["red", "green", "blue", "yellow"][k % 4], ["circle", "square", "star"][k % 3],
                    size=80 + k).save(folder / f"{k}.png")


def _vectors_by_item(eng) -> dict:
    """Every stored vector by (path, item modality, position in its file): comparable across indexes."""
    out = {}
    for c in eng.vectors():
        rows = eng.store.catalog.items(c.ids)
        out.update(((rows[int(i)].path, rows[int(i)].modality, rows[int(i)].ordinal), v)
                   for i, v in zip(c.ids, c.vectors))
    return out


def test_a_bridge_switches_first_then_real_vectors_replace_the_bridged_ones(tmp_path, tiny_space_dir, monkeypatch):
    from mmretrieval.engine import migrating

    lib, idx = tmp_path / "lib", tmp_path / "idx"
    _shapes(lib, 120)
    with mmr.Engine(idx, model="tiny") as eng:
        eng.index([lib])
        old_fp = eng.store.space_record()["fingerprint"]
    monkeypatch.setattr(migrating, "BRIDGE_PAIRS", 40)
    embed_for_real = migrating.Migrator._embed_bridged

    def killed(*a, **k):
        raise KeyboardInterrupt  # a kill right after the switch, before any bridged file is embedded for real

    monkeypatch.setattr(migrating.Migrator, "_embed_bridged", killed)
    reader = mmr.Engine(idx, readonly=True)  # a server, say: it answers all through, and follows the switch
    with searching_throughout(reader) as (answers, failures):
        with mmr.Engine(idx) as eng, pytest.raises(KeyboardInterrupt):
            eng.migrate(str(tiny_space_dir), bridge=True)
        with mmr.Engine(idx, readonly=True) as eng:  # in the new space already, every file searchable
            st = eng.stats()
            assert eng.spec.name == "test-tiny" and st["files_indexed"] == 120 and eng.check()["consistent"]
            bridged = st["migration"]["bridged"]
            assert bridged == {"files": 120 - 41, "items": 120 - 41}  # 25 sampled to estimate, 16 more to fit on
            hits = eng.search("a red circle", k=200)
            assert len(hits) == 120 and sum(h.approximate for h in hits) == bridged["items"]
            assert all(h.to_dict().get("approximate", False) == h.approximate for h in hits)
            assert [p["fingerprint"] for p in st["previous_spaces"]] == [old_fp]
            changed = next(h.path for h in hits if h.approximate)
        from mmretrieval.synth import shape_image

        shape_image("green", "star", size=300).save(changed)  # changed meanwhile: its bridged vector is not kept
        monkeypatch.setattr(migrating.Migrator, "_embed_bridged", embed_for_real)
        with mmr.Engine(idx) as eng:
            report = eng.migrate(str(tiny_space_dir), bridge=True)  # goes on: embeds the bridged files, in place
            assert report.switched and report.indexed == bridged["files"] and eng.stats()["migration"] is None
            assert not any(h.approximate for h in eng.search("a red circle", k=200))
            assert eng.check()["consistent"] and eng.store.cache.stats()["entries"] == 0
            mine = _vectors_by_item(eng)
    assert failures == [] and answers and set(answers) == {3} and reader.spec.name == "test-tiny"
    reader.close()
    with mmr.Engine(tmp_path / "fresh", model=str(tiny_space_dir)) as ref:  # what indexing from nothing makes
        ref.index([lib])
        theirs = _vectors_by_item(ref)
    assert mine.keys() == theirs.keys() and max(float(abs(mine[p] - theirs[p]).max()) for p in mine) < 1e-5


def test_a_disk_that_fills_up_mid_way_leaves_the_old_space_whole(tmp_path, tiny_space_dir, monkeypatch):
    import errno
    import shutil as sh

    from mmretrieval.store import Store

    lib, idx = tmp_path / "lib", tmp_path / "idx"
    _shapes(lib, 60)
    with mmr.Engine(idx, model="tiny") as eng:
        eng.index([lib])
    # before any build: an estimate larger than the free space is refused, the sample kept
    monkeypatch.setattr(sh, "disk_usage", lambda p: sh._ntuple_diskusage(10 ** 9, 10 ** 9 - 1000, 1000))
    with mmr.Engine(idx) as eng, pytest.raises(mmr.DiskFullError, match="needs about .* MB more on the disk"):
        eng.migrate(str(tiny_space_dir))
    monkeypatch.undo()
    # during the build: the new index's third checkpoint finds the disk full
    real, calls = Store.checkpoint, []

    def checkpoint(self, **kw):
        if self.root.name == switch.MIGRATION_DIR:
            calls.append(1)
            if len(calls) == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, **kw)

    monkeypatch.setattr(Store, "checkpoint", checkpoint)
    with mmr.Engine(idx) as eng:
        with pytest.raises(mmr.DiskFullError, match="current space is untouched and answers searches"):
            eng.migrate(str(tiny_space_dir))
        assert eng.spec.name == "tiny" and eng.stats()["files_indexed"] == 60 and eng.check()["consistent"]
        assert len(eng.search("a red circle", types=["image"], k=5)) == 5
        assert eng.stats()["migration"]["to"] == "test-tiny"
    monkeypatch.undo()
    with mmr.Engine(idx) as eng:  # space again: it goes on
        assert eng.migrate(str(tiny_space_dir)).switched and eng.spec.name == "test-tiny"
        assert eng.stats()["files_indexed"] == 60 and eng.check()["consistent"]
    # after a switch through a bridge: the index stays in the new space and says how to go on
    from mmretrieval.engine import migrating

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(migrating, "BRIDGE_PAIRS", 20)
    monkeypatch.setattr(migrating.Migrator, "_embed_bridged", full)
    with mmr.Engine(idx) as eng:
        with pytest.raises(mmr.DiskFullError, match="the index is in 'tiny' and answers"):
            eng.migrate("tiny", bridge=True)
        assert eng.spec.name == "tiny" and eng.stats()["migration"]["bridged"]["files"] > 0


def test_a_bridge_that_would_search_worse_than_staying_is_not_used(tmp_path, tiny_space_dir, monkeypatch):
    from mmretrieval import bridge
    from mmretrieval.engine import migrating

    lib, idx = tmp_path / "lib", tmp_path / "idx"
    _shapes(lib, 60)
    with mmr.Engine(idx, model="tiny") as eng:
        eng.index([lib])
    monkeypatch.setattr(migrating, "BRIDGE_PAIRS", 30)
    monkeypatch.setattr(bridge, "held_out", lambda *a, **k: bridge.HeldOut(bridged=0.3, old=0.6, pairs=6))
    with mmr.Engine(idx) as eng:
        report = eng.migrate(str(tiny_space_dir), bridge=True)
        assert report.bridge_refused.startswith("on 6 image item(s) left out of its fit, the bridge finds 0.30")
        assert report.bridge == {} and report.bridged == 0 and report.switched and eng.spec.name == "test-tiny"
        assert eng.stats()["migration"] is None and not any(h.approximate for h in eng.search("a star", k=60))


def test_the_index_keeps_its_settings_in_the_new_space(tmp_path, tiny_space_dir):
    idx = tmp_path / "idx"
    with mmr.Engine(idx, model="tiny") as eng:
        eng.index([DEMO / "sounds", DEMO / "images"], pool_audio=True, ocr="off", index_type="hnsw",
                  memory_budget=2 ** 30)
        before = {k: eng.store.catalog.get_meta(k) for k in ("item_options", "index_type", "memory_budget")}
        audio = eng.stats()["items"]["audio"]
        eng.migrate(str(tiny_space_dir))
        after = {k: eng.store.catalog.get_meta(k) for k in ("item_options", "index_type", "memory_budget")}
        assert after == before and eng.stats()["items"]["audio"] == audio == 27  # one pooled item per sound
        assert eng.store.vectors.kind == "hnsw"


def test_a_tower_both_spaces_share_is_not_run_again(tmp_path):
    """Between two spaces with the same clip tower and different audio towers, only the sounds are encoded."""
    from tiny_space import make_tiny_space

    first = make_tiny_space(tmp_path / "first", name="test-first", audio_dir="audio")
    other = make_tiny_space(tmp_path / "other", name="test-other-audio", audio_seed=7, audio_dir="audio")
    with mmr.Engine(tmp_path / "idx", model=str(first)) as eng:
        eng.index([DEMO])
        counts = eng.stats()["items"]
        report = eng.migrate(str(other))
        assert report.switched and eng.spec.name == "test-other-audio"
        assert report.reused == {"image": counts["image"], "text": counts["text"]}
        assert set(report.per_modality) == {"audio"}  # the estimate measured only what is encoded
        mine = _vectors_by_item(eng)
    with mmr.Engine(tmp_path / "fresh", model=str(other)) as ref:  # what indexing from nothing makes
        ref.index([DEMO])
        theirs = _vectors_by_item(ref)
    assert mine.keys() == theirs.keys() and max(float(abs(mine[k] - theirs[k]).max()) for k in mine) < 1e-5
