"""The embedding cache: vectors that leave the index (a removed folder, an edit, a file gone) come back without
decoding or encoding when their content does, identical; the cache stays within its bound and can be off."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import mmretrieval as mmr

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo"


@pytest.fixture
def lib(tmp_path):
    shutil.copytree(DEMO, tmp_path / "lib")
    return tmp_path / "lib"


def _vectors(eng, under: Path) -> dict[str, np.ndarray]:
    rows = [i for r in eng.store.catalog.files(under=[str(under)]).values()
            for i in eng.store.catalog.items_of_file(r.id)]
    vecs = eng.store.vectors.reconstruct(np.array([i.id for i in rows], np.int64))
    return {f"{i.path}#{i.ordinal}": v for i, v in zip(rows, vecs)}


def test_a_removed_folder_comes_back_without_decoding_or_encoding(lib, tmp_path, monkeypatch):
    eng = mmr.Engine(tmp_path / "idx", model="tiny")
    eng.index([lib])
    before = _vectors(eng, lib / "images")
    assert eng.remove([lib / "images"]) == 24
    assert eng.stats()["embedding_cache"]["entries"] == 24
    eng.compact()  # the cache lives beside the vectors' files

    from mmretrieval.ingest.decode import Decoder

    monkeypatch.setattr(Decoder, "decode", lambda *a, **k: (_ for _ in ()).throw(AssertionError("decoded")))
    report = eng.index([lib])
    assert report.files_from_cache == 24 and report.files_new == 24 and not report.skipped
    after = _vectors(eng, lib / "images")
    assert after.keys() == before.keys() and all(np.array_equal(after[k], before[k]) for k in before)
    st = eng.stats()["embedding_cache"]
    assert st["entries"] == 0 and st["hits"] == 24  # back in the index: no second copy kept
    assert eng.search("a red circle", types=["image"], k=1)[0].path.endswith("red-circle.png")
    assert eng.check()["consistent"]
    eng.close()


def test_an_edit_undone_and_a_file_restored(lib, tmp_path):
    eng = mmr.Engine(tmp_path / "idx", model="tiny")
    eng.index([lib])
    note = lib / "docs" / "red-circle.txt"
    original = note.read_bytes()
    note.write_text("A green star on a dark background.")
    assert eng.index([lib]).files_changed == 1
    note.write_bytes(original)  # undone: the first content's vectors come back
    report = eng.index([lib])
    assert report.files_changed == 1 and report.files_from_cache == 1
    assert eng.search("a red circle", types=["text"], k=1)[0].path == str(note)
    shutil.move(lib / "sounds", tmp_path / "sounds")
    assert eng.index([lib]).files_removed == 27
    shutil.move(tmp_path / "sounds", lib / "sounds")
    assert eng.index([lib]).files_from_cache == 27 and eng.check()["consistent"]
    eng.close()


def test_the_cache_keeps_to_its_bound_and_can_be_off(lib, tmp_path, monkeypatch):
    monkeypatch.setenv("MMR_EMBEDDING_CACHE", "8K")
    eng = mmr.Engine(tmp_path / "idx", model="tiny")
    eng.index([lib])
    eng.remove([lib / "images"])
    st = eng.stats()["embedding_cache"]
    assert 0 < st["entries"] < 24 and st["bytes"] <= 8 * 1024  # the least recently kept went first
    report = eng.index([lib])
    assert report.files_from_cache == st["entries"] and report.files_new == 24
    eng.close()

    monkeypatch.setenv("MMR_EMBEDDING_CACHE", "0")
    off = mmr.Engine(tmp_path / "idx2", model="tiny")
    off.index([lib])
    off.remove([lib / "images"])
    assert off.stats()["embedding_cache"]["entries"] == 0 and not (tmp_path / "idx2" / "embeddings-cache.sqlite").exists()
    assert off.index([lib]).files_from_cache == 0
    off.close()


def test_vectors_kept_in_one_space_come_back_in_another_with_the_same_tower(lib, tmp_path, monkeypatch):
    """Removed in a space, re-added after the index moved to a space with the same clip tower (another audio
    tower): the images come back from the cache, the sounds are encoded."""
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_space import make_tiny_space

    first = make_tiny_space(tmp_path / "first", name="test-first", audio_dir="audio")
    other = make_tiny_space(tmp_path / "other", name="test-other-audio", audio_seed=7, audio_dir="audio")
    eng = mmr.Engine(tmp_path / "idx", model=str(first))
    eng.index([lib])
    before = _vectors(eng, lib / "images")
    assert eng.remove([lib / "images", lib / "sounds"]) == 24 + 27
    eng.migrate(str(other))
    assert eng.spec.name == "test-other-audio" and eng.stats()["embedding_cache"]["entries"] == 24 + 27

    from mmretrieval.ingest.decode import Decoder

    decode = Decoder.decode
    decoded: list[str] = []

    def watched(self, entry, *a, **k):  # noqa: ANN001
        decoded.append(Path(entry.path).parent.name)
        return decode(self, entry, *a, **k)

    monkeypatch.setattr(Decoder, "decode", watched)
    report = eng.index([lib])
    assert report.files_from_cache == 24 and set(decoded) == {"sounds"}  # the other audio tower: encoded
    st = eng.stats()["embedding_cache"]
    assert (st["hits"], st["misses"]) == (24, 27)  # each lookup counted once
    after = _vectors(eng, lib / "images")
    assert after.keys() == before.keys() and all(np.array_equal(after[k], before[k]) for k in before)
    with mmr.Engine(tmp_path / "fresh", model=str(other)) as ref:  # the same as the new space makes them
        ref.index([lib / "images"])
        fresh = _vectors(ref, lib / "images")
    assert max(float(np.abs(after[k] - fresh[k]).max()) for k in after) < 1e-5
    eng.close()
