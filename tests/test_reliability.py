"""Kill -9 at random moments, a second writer, and searches while an index run is in progress."""
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import mmretrieval as mmr
from mmretrieval.errors import IndexLockedError
from mmretrieval.synth import COLORS, SHAPES, shape_image, tone

from document_files import write_pdf
from video_files import Scene, Sound, VideoSpec, write_video


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    import soundfile as sf

    root = tmp_path_factory.mktemp("lib")
    for i, (c, s) in enumerate((c, s) for c in COLORS for s in SHAPES):
        for k in range(4):
            shape_image(c, s, size=160, center=(0.3 + 0.1 * k, 0.5)).save(root / f"{c}-{s}-{k}.png")
    for i in range(6):
        sf.write(root / f"t{i}.wav", tone(200 + 100 * i, 6.0, 8000), 8000)
        (root / f"doc{i}.txt").write_text(" ".join(f"Sentence {j} of document {i} about a {c} thing."
                                                  for j, c in enumerate(list(COLORS) * 4)))
    for i in range(3):  # documents: a file's passages and figures commit together
        write_pdf(root / f"report{i}.pdf", [{"lines": [f"Page {n} of report {i} on {c} {s}s." for c in COLORS],
                                             "images": [(shape_image(c, s, size=96), (72, 100, 96, 96))]}
                                            for n, (c, s) in enumerate(zip(list(COLORS) * 3, SHAPES * 4))])
    for i in range(2):  # videos: scenes merged from samples, sound and subtitles commit together
        write_video(root / f"clip{i}.mkv", VideoSpec([Scene(3, c, s) for c, s in zip(list(COLORS)[i:i + 4], SHAPES)],
                                                    sounds=[Sound(1.0, 2.0, 300.0 + 200 * i)],
                                                    subtitles=[(0.5, 2.0, f"clip {i} opens")]))
    return root


def _index_cmd(root, idx, space):
    return [sys.executable, "-m", "mmretrieval.cli", "index", str(root), "--index", str(idx), "--model", str(space),
            "--no-progress", "--checkpoint-seconds", "0.3", "--batch-size", "8"]


def _items(eng):
    rows = eng.store.catalog.items(eng.store.catalog.item_ids().tolist()).values()
    return sorted((r.path, str(sorted(r.locator.items()))) for r in rows)


def test_kill_at_random_moments_leaves_a_consistent_index(tmp_path, folder, tiny_space_dir):
    import shutil

    lib = tmp_path / "lib"
    shutil.copytree(folder, lib, symlinks=True)
    idx = tmp_path / "idx"
    rng = random.Random(1234)
    kills = 0
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for attempt in range(8):
        # new files every attempt, so that every run has work to be killed in
        (lib / f"new{attempt}").mkdir()
        for k in range(120):
            shape_image(list(COLORS)[k % 8], SHAPES[k % 6], size=128, center=(0.5, 0.3 + 0.01 * k)).save(
                lib / f"new{attempt}" / f"{k}.png")
        p = subprocess.Popen(_index_cmd(lib, idx, tiny_space_dir), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env=env)
        time.sleep(rng.uniform(2.0, 6.0))
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        p.wait()
        if not (idx / "catalog.sqlite").exists():
            continue
        eng = mmr.Engine(idx, readonly=True)
        rep = eng.check()
        assert rep["consistent"], rep  # the committed state always agrees, without any repair
        eng.close()
    print(f"kills: {kills} of 8 runs")
    assert kills >= 4
    r = subprocess.run(_index_cmd(lib, idx, tiny_space_dir), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # nothing lost, nothing doubled: the same items as one uninterrupted run
    fresh = tmp_path / "fresh"
    r = subprocess.run(_index_cmd(lib, fresh, tiny_space_dir), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    a, b = mmr.Engine(idx, readonly=True), mmr.Engine(fresh, readonly=True)
    assert _items(a) == _items(b)
    assert a.check()["consistent"] and a.stats()["vectors"] == b.stats()["vectors"]
    assert len(list(idx.glob("vectors*.faiss"))) == 1  # killed runs' files were cleaned up


def test_second_writer_gets_a_clear_error(tmp_path, folder, tiny_space_dir):
    a = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    a.store.acquire_lock()
    b = mmr.Engine(tmp_path / "idx")
    with pytest.raises(IndexLockedError, match=f"pid {os.getpid()}.*searches keep working"):
        b.index([folder / "red-circle-0.png"])
    a.store.release_lock()
    b.index([folder / "red-circle-0.png"])
    assert b.stats()["items_total"] == 1


def test_search_while_indexing_in_another_process(tmp_path, folder, tiny_space_dir):
    idx = tmp_path / "idx"
    first = mmr.Engine(idx, model=str(tiny_space_dir))
    first.index([folder / "red-circle-0.png"])
    first.close()
    reader = mmr.Engine(idx, readonly=True)
    assert len(reader.search("a red circle", k=5, types=["image"])) == 1
    p = subprocess.Popen(_index_cmd(folder, idx, tiny_space_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = []
    errors = []
    while p.poll() is None:
        try:
            hits = reader.search("a red circle", k=1000, types=["image", "audio", "text"])
            seen.append(len(hits))
            assert len({h.id for h in hits}) == len(hits)
        except Exception as e:  # any failure while the writer works is a bug
            errors.append(repr(e))
        time.sleep(0.2)
    assert p.returncode == 0, p.stderr.read()
    assert not errors
    final = reader.search("a red circle", k=1000, types=["image", "audio", "text"])
    assert len(final) == reader.stats()["items_total"]  # the new state is picked up without reopening
    assert seen == sorted(seen) and seen[0] >= 1          # results only grow: committed states, in order
    assert len(set(seen)) >= 2                            # and intermediate commits were visible


def test_check_and_repair_cli(tmp_path, folder, tiny_space_dir, capsys):
    from mmretrieval.cli import main

    idx = tmp_path / "idx"
    eng = mmr.Engine(idx, model=str(tiny_space_dir))
    eng.index([folder / "red-circle-0.png", folder / "doc0.txt"])
    victim = eng.search("x", types=["text"], k=1)[0]
    eng.store.vectors.remove(np.array([victim.id]))
    eng.store.vectors.save(eng.store.vectors_path)  # damage from outside the commit protocol
    eng.close()
    assert main(["check", "--index", str(idx)]) == 1
    assert "NOT consistent" in capsys.readouterr().out
    assert main(["check", "--index", str(idx), "--repair"]) == 0
    out = capsys.readouterr().out
    assert "items_without_vector 1" in out
    assert main(["check", "--index", str(idx)]) == 0


def test_a_writer_opened_before_another_commit_keeps_that_commit(tmp_path, tiny_space_dir):
    """A long-lived writer (a server, an MCP server) whose vectors were loaded before another writer committed:
    its next write must catch up first. It once reconciled against its stale vectors, took the other's new items
    for items without vectors, and forgot their files."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shape_image("red", "circle", size=64).save(tmp_path / "a" / "red.png")
    shape_image("blue", "square", size=64).save(tmp_path / "b" / "blue.png")
    first = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    first.index([tmp_path / "a"])
    other = mmr.Engine(tmp_path / "idx")  # opened now, written with later
    first.index([tmp_path / "b"])         # commits blue.png
    first.close()
    report = other.index([tmp_path / "a"])
    assert report.repaired == {"orphan_vectors": 0, "items_without_vector": 0, "files_reset": 0}
    assert {os.path.basename(p) for p in other.store.catalog.files()} == {"red.png", "blue.png"}
    other.remember("a note written by the late writer")
    assert len(other.store.catalog.files()) == 3 and other.check()["consistent"]
    other.close()
