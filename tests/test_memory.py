"""An agent's memory (`Engine.remember/recall/update_memory/forget/memories`, `mmr notes`): notes kept in the
index's space without files. Tested with the shipped `tiny` space, whose text tower knows the demo's words
(colours, shapes, sounds): what is recalled, what merges, that scopes never leak, and that notes outlive
re-indexing, compaction, a repair, export and import, and an older catalog."""
from __future__ import annotations

import itertools
import random
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

import mmretrieval as mmr
from mmretrieval.catalog import SCHEMA_VERSION
from mmretrieval.memory import MERGE_COSINE
from mmretrieval.train.corpus import COLOR_WORDS, SHAPE_WORDS

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo"


@pytest.fixture(scope="module")
def demo_index(tmp_path_factory):
    idx = tmp_path_factory.mktemp("memory") / "idx"
    with mmr.Engine(idx, model="tiny") as eng:
        eng.index([DEMO / "docs", DEMO / "images"])
    return idx


@pytest.fixture
def engine(demo_index, tmp_path):
    import shutil

    shutil.copytree(demo_index, tmp_path / "idx")
    with mmr.Engine(tmp_path / "idx") as eng:
        yield eng


def test_remember_recall_update_forget(engine):
    files = engine.stats()["files_indexed"]
    first = engine.remember("The user's logo is a red circle.", user="ann", agent="helper", metadata={"kind": "brand"})
    assert first.action == "added" and first.memory.scope.to_dict() == {"user": "ann", "agent": "helper", "session": ""}
    engine.remember("Ann's favourite sound is a low steady buzz.", user="ann", agent="helper")
    engine.remember("The user's logo is a blue square.", user="bob", agent="helper")
    # a restatement in the same scope updates the note, saying what it replaced; another scope's is left alone
    again = engine.remember("the user's LOGO is a red circle", user="ann", agent="helper", metadata={"year": 2026})
    assert again.action == "updated" and again.memory.id == first.memory.id
    assert again.replaced == "The user's logo is a red circle." and again.memory.metadata == {"kind": "brand", "year": 2026}
    assert engine.remember("the user's logo is a red circle", user="ann", agent="helper", merge=False).action == "added"
    assert len(engine.memories(user="ann")) == 3 and len(engine.memories()) == 4

    found = engine.recall("what does the logo look like? a scarlet disc", user="ann", k=2)
    assert [m.id for m in found][0] in {first.memory.id, first.memory.id + 3}
    assert all(m.scope.user == "ann" for m in found) and found[0].relevance is not None and found[0].cosine > 0.5
    assert [m.text for m in engine.recall("a low steady buzz", user="ann", k=1)] == \
        ["Ann's favourite sound is a low steady buzz."]
    assert [m.metadata for m in engine.recall("logo", metadata={"kind": "brand"})] == [{"kind": "brand", "year": 2026}]
    # searches of the collection never return notes; collection views do not read them
    for types in (None, ["text"]):
        hits = engine.search("the user's logo is a red circle", types=types, k=50)
        assert hits and not any(h.path.startswith("memory:") for h in hits)
    assert not any(h.path.startswith("memory:") for h in engine.search("logo", types=["text"], mode="keyword", k=50))
    note_items = set(engine.store.catalog.memory_items()[0].tolist())
    assert note_items and not note_items & {int(i) for c in engine.vectors() for i in c.ids}
    st = engine.stats()
    assert st["memories"] == 4 and st["files_indexed"] == files and engine.check()["consistent"]

    # new text is embedded again; a caller of another scope cannot touch it
    changed = engine.update_memory(first.memory.id, "The user's logo is a green star.", user="ann")
    assert changed.text == "The user's logo is a green star." and changed.metadata["kind"] == "brand"
    assert engine.recall("an emerald five-pointed star", user="ann", k=1)[0].id == first.memory.id
    with pytest.raises(mmr.MemoryNotFoundError):
        engine.update_memory(first.memory.id, "hijacked", user="bob")
    with pytest.raises(mmr.MemoryNotFoundError):
        engine.forget(first.memory.id, user="bob")
    with pytest.raises(mmr.UsageError, match="everything=True"):
        engine.forget()
    assert engine.forget(first.memory.id, user="ann") == 1 and engine.forget(user="bob") == 1
    assert {m.scope.user for m in engine.memories()} == {"ann"} and len(engine.memories()) == 2
    assert engine.forget(everything=True) == 2 and engine.memories() == [] and engine.check()["consistent"]


def test_bad_arguments_are_refused_naming_what_is_valid(engine):
    for kwargs, said in ((dict(text=""), "empty"), (dict(text=3), "is text"), (dict(text="x" * 20_001), "20,000"),
                         (dict(text="x", user="a b"), "user must be"), (dict(text="x", metadata={"a b": 1}), "names"),
                         (dict(text="x", metadata={"a": [1]}), "values are"), (dict(text="x", merge_above=2), "cosine")):
        with pytest.raises(mmr.UsageError, match=said):
            engine.remember(**kwargs)
    with pytest.raises(mmr.UsageError, match="from 0 to 1"):
        engine.recall("x", recency=2)
    with pytest.raises(mmr.UsageError, match="k must be"):
        engine.recall("x", k=0)
    assert engine.recall("anything") == []  # no notes yet
    with pytest.raises(mmr.MemoryNotFoundError, match="no memory 5"):
        engine.update_memory(5, "x")


def test_scopes_never_leak_between_users_agents_and_sessions(engine):
    """Random notes over 3 users x 3 agents x 3 sessions (and none), random recalls, lists and forgets with
    random scope filters: every note returned matches every field given, and a forget removes exactly the
    notes of its scope (mem0 #3928: a delete reached another scope; #5121: a search another user's notes)."""
    rng = random.Random(7)
    names = {"user": ["u1", "u2", "u3", None], "agent": ["a1", "a2", "a3", None], "session": ["s1", "s2", "s3", None]}
    colours, shapes = list(COLOR_WORDS), list(SHAPE_WORDS)
    model: dict[int, dict[str, str]] = {}
    for n in range(60):
        scope = {f: rng.choice(v) for f, v in names.items()}
        m = engine.remember(f"note {n}: a {rng.choice(colours)} {rng.choice(shapes)}", merge=False, **scope).memory
        model[m.id] = {f: scope[f] or "" for f in names}

    def matches(stored: dict[str, str], given: dict[str, str | None]) -> bool:
        return all(v is None or stored[f] == (v or "") for f, v in given.items())

    for _ in range(40):
        given = {f: rng.choice(v + [None]) for f, v in names.items()}
        expect = {i for i, s in model.items() if matches(s, given)}
        assert {m.id for m in engine.memories(**given)} == expect
        got = engine.recall(f"a {rng.choice(colours)} {rng.choice(shapes)}", k=100, **given)
        assert {m.id for m in got} == expect  # k covers them all: exactly the scope's, none of another
    for _ in range(8):
        picked = {f: rng.choice(v) for f, v in names.items()}
        given = {f: v for f, v in picked.items() if v is not None and rng.random() < 0.6}
        if not given:
            continue
        doomed = {i for i, s in model.items() if matches(s, given)}
        assert engine.forget(**given) == len(doomed)
        for i in doomed:
            del model[i]
        assert {m.id for m in engine.memories()} == set(model)
    assert engine.check()["consistent"]


def notes_and_paraphrases(rng: random.Random, n: int) -> list[tuple[str, str, tuple[str, str]]]:
    """(note, a paraphrased question about it, its subject): each note about one colour+shape pair."""
    pairs = rng.sample(list(itertools.product(COLOR_WORDS, SHAPE_WORDS)), n)
    things = ["logo", "kite", "badge", "sticker", "stamp", "flag", "sign", "tile"]
    out = []
    for k, (c, s) in enumerate(pairs):
        thing = things[k % len(things)]
        note = f"The {thing} the user chose is a {COLOR_WORDS[c][0]} {SHAPE_WORDS[s][0]}."
        query = f"which {rng.choice(COLOR_WORDS[c][1:])} {rng.choice(SHAPE_WORDS[s][1:])} did they pick?"
        out.append((note, query, (c, s)))
    return out


def test_memory_quality_recall_recency_and_merging(engine):
    """Notes over many sessions, recalled by paraphrased questions (synonyms the note does not use); a recency
    weight lifts the newer of two notes on one subject; restatements merge, different facts never do."""
    rng = random.Random(3)
    data = notes_and_paraphrases(rng, 40)
    ids = []
    for k, (note, _, _) in enumerate(data):
        ids.append(engine.remember(note, user="ann", session=f"s{k % 10}", merge=False).memory.id)
    hits5 = [ids[k] in [m.id for m in engine.recall(q, user="ann", k=5)] for k, (_, q, _) in enumerate(data)]
    recall_at_5 = float(np.mean(hits5))
    print(f"recall@5 of 40 notes for paraphrased questions: {recall_at_5:.2f}")
    assert recall_at_5 >= 0.8

    # recency: an old note and a newer one on the same subject; the question matches the old one better
    old = engine.remember("The user's car is a red box.", user="cy", merge=False).memory
    new = engine.remember("The user's car is now a red circle.", user="cy", merge=False).memory
    engine.store.catalog.db.execute("UPDATE memories SET updated = ? WHERE id = ?", (time.time() - 60 * 86400, old.id))
    q = "what is the user's car? a red box"
    assert [m.id for m in engine.recall(q, user="cy", k=2)] == [old.id, new.id]
    ranked = engine.recall(q, user="cy", k=2, recency=0.9)
    assert [m.id for m in ranked] == [new.id, old.id] and ranked[0].score > ranked[1].score
    assert engine.recall(q, user="cy", k=1, after=time.time() - 86400)[0].id == new.id

    # merging: each note restated in other words merges only into its own note, never into another's
    merged = wrong = 0
    for k, (note, _, (c, s)) in enumerate(data[:20]):
        restated = f"the {note.split()[1]} the user chose: {COLOR_WORDS[c][0]} {SHAPE_WORDS[s][0]}"
        r = engine.remember(restated, user="ann", session=f"s{k % 10}")
        merged += r.action == "updated" and r.memory.id == ids[k]
        wrong += r.action == "updated" and r.memory.id != ids[k]
    print(f"restatements merged: {merged}/20 at cosine {MERGE_COSINE}, into another note: {wrong}")
    assert wrong == 0 and merged >= 10


def test_notes_outlive_reindexing_compaction_a_repair_export_and_import(tmp_path):
    import shutil

    pytest.importorskip("pyarrow")
    lib = tmp_path / "lib"
    shutil.copytree(DEMO / "docs", lib)
    eng = mmr.Engine(tmp_path / "idx", model="tiny")
    eng.index([lib])
    kept = eng.remember("The spare key is under a blue square tile.", user="ann", session="home",
                        metadata={"room": "hall"}).memory
    (lib / "red-circle.txt").unlink()  # a sweep of the folder
    report = eng.index([lib])
    assert report.files_removed == 1 and [m.id for m in eng.memories()] == [kept.id]
    eng.compact()
    assert eng.recall("a blue square", k=1)[0].id == kept.id

    # vectors lost from outside: the repair forgets the note's items, the note waits, the next write embeds it
    with eng.writer.writing(reconcile=False):
        eng.store.begin()
        eng.store.vectors.remove(eng.store.catalog.memory_items()[0])
        eng.store.checkpoint()
    report = eng.check(repair=True)
    assert report["repaired"]["files_reset"] == 1 and report["consistent"]
    assert eng.memories()[0].embedded is False and eng.recall("a blue square tile") == []
    eng.index([lib])
    assert eng.memories()[0].embedded and eng.recall("a blue square", k=1)[0].text == kept.text

    from mmretrieval.shards import export_shards, import_shards

    manifest = export_shards(eng, tmp_path / "shards")
    assert manifest["memories"]["count"] == 1 and "memory" not in manifest["shards"]
    before, files = eng.memories()[0], eng.stats()["files_indexed"]
    vec_before = eng.store.vectors.reconstruct(eng.store.catalog.memory_items()[0])
    eng.close()
    other, rep = import_shards(tmp_path / "shards", tmp_path / "idx2")
    with other:
        assert rep.memories == 1
        after = other.memories()[0]
        assert (after.text, after.scope, after.metadata, after.created, after.updated) == \
            (before.text, before.scope, before.metadata, before.created, before.updated)
        np.testing.assert_allclose(other.store.vectors.reconstruct(other.store.catalog.memory_items()[0]), vec_before,
                                   atol=1e-6)
        assert other.recall("a blue square", k=1)[0].text == kept.text and other.check()["consistent"]
        assert other.stats()["files_indexed"] == files == len(list(lib.iterdir()))  # a note is not a file


def test_an_index_from_before_memories_is_upgraded_on_write(demo_index, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(demo_index, old)
    db = sqlite3.connect(old / "catalog.sqlite")
    db.execute("DROP TABLE memories")
    db.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    db.commit()
    db.close()
    with mmr.Engine(old, readonly=True) as reader:  # a reader of a schema-2 index: no notes, searches as before
        assert reader.memories() == [] and reader.recall("a red circle") == []
        assert reader.search("a red circle", k=1)[0].path.endswith("red-circle.png")
    with mmr.Engine(old) as writer:
        assert writer.store.catalog.get_meta("schema_version") == str(SCHEMA_VERSION)
        writer.remember("a red circle is the logo")
        assert writer.recall("a red circle", k=1)[0].text == "a red circle is the logo"


def test_mmr_notes_from_the_shell(demo_index, tmp_path, capsys):
    import json
    import shutil

    from mmretrieval.cli import main

    idx = tmp_path / "idx"
    shutil.copytree(demo_index, idx)
    i = ["--index", str(idx)]
    assert main(["notes", "add", "The car is parked on level 3, row F.", "--user", "ann", "--meta", "floor=3", *i]) == 0
    assert capsys.readouterr().out.strip() == "added note 1"
    assert main(["notes", "add", "the car is parked on level 3, row f", "--user", "ann", *i]) == 0
    assert capsys.readouterr().out.startswith("updated note 1 (restated")
    assert main(["notes", "add", "A blue square is the logo.", "--user", "bob", *i]) == 0
    capsys.readouterr()
    assert main(["notes", "list", "--user", "ann", "--json", *i]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(m["id"], m["metadata"]) for m in listed] == [(1, {"floor": 3})]
    assert main(["notes", "recall", "a navy blue box", "-k", "1", *i]) == 0
    assert "A blue square is the logo." in capsys.readouterr().out
    assert main(["notes", "rm", *i]) == 2 and "--all" in capsys.readouterr().err
    assert main(["notes", "rm", "1", "--user", "bob", *i]) == 1 and "no memory 1" in capsys.readouterr().err
    assert main(["notes", "rm", "--user", "bob", *i]) == 0 and "forgot 1 note(s)" in capsys.readouterr().out
    assert main(["info", *i]) == 0 and "notes:        1" in capsys.readouterr().out


WRITER = """
import sys, mmretrieval as mmr
from mmretrieval.errors import IndexLockedError
eng = mmr.Engine(sys.argv[1])
for n in range(int(sys.argv[3])):
    text = f"{sys.argv[2]} note {n}: a red circle number {n}"
    try:
        m = eng.remember(text, user=sys.argv[2], merge=False).memory
        print("ok", m.id, text, flush=True)
    except IndexLockedError as e:
        print("locked", text, "|", e, flush=True)
"""


def test_concurrent_writers_and_a_kill_lose_no_note(tmp_path):
    """`mmr index` of a folder, two processes writing notes and a third killed while writing, on one index at
    once: every note a writer was told is kept is there, each refusal says another process is writing, readers
    answer throughout, and the index is consistent."""
    import os
    import signal
    import subprocess
    import sys

    from mmretrieval.synth import shape_image

    lib = tmp_path / "lib"
    lib.mkdir()
    for k in range(40):
        shape_image(list(COLOR_WORDS)[k % 8], list(SHAPE_WORDS)[k % 6], size=96 + k).save(lib / f"{k}.png")
    with mmr.Engine(tmp_path / "idx", model="tiny") as eng:
        eng.index([DEMO / "docs"])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    idx = str(tmp_path / "idx")
    indexer = subprocess.Popen([sys.executable, "-m", "mmretrieval.cli", "index", str(lib), "--index", idx],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, idx, who, "12"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for who in ("ann", "bob", "cy")]
    reader = mmr.Engine(idx, readonly=True)
    victim, kept = writers[2], []
    for line in victim.stdout:  # kill cy's writer after its second note: maybe in the middle of the third
        kept.append(line)
        if len(kept) == 2:
            os.kill(victim.pid, signal.SIGKILL)
            break
    victim.wait()
    searched = len(reader.search("a red circle", types=["text"], k=3))
    outs = [w.communicate(timeout=600)[0] for w in writers[:2]]
    assert indexer.wait(timeout=600) == 0, indexer.stderr.read()
    lines = [ln for out in [*outs, "".join(kept)] for ln in out.splitlines()]
    confirmed = {ln.split(" ", 2)[2] for ln in lines if ln.startswith("ok ")}
    refused = [ln for ln in lines if ln.startswith("locked ")]
    assert all("is writing to the index" in ln for ln in refused)
    print(f"notes confirmed: {len(confirmed)}, refused while another process wrote: {len(refused)}")
    with mmr.Engine(idx) as eng:
        stored = {m.text for m in eng.memories()}
        assert confirmed <= stored and len(confirmed) >= 20
        assert eng.check()["consistent"] and eng.stats()["files_indexed"] == 51 + 40
    assert searched == 3
    reader.close()
