import os
import shutil

import numpy as np
import pytest

import mmretrieval as mmr
from mmretrieval.errors import IndexNotFoundError, MissingWeightsError, SpaceMismatchError, UsageError
from media import make_media, shape_image


@pytest.fixture
def media(tmp_path):
    return make_media(tmp_path / "media")


def _consistent(eng):
    """Every catalog item has exactly one vector and vice versa."""
    cat_ids = np.sort(eng.store.catalog.item_ids())
    idx_ids = np.sort(eng.store.vectors.ids())
    np.testing.assert_array_equal(cat_ids, idx_ids)


def test_index_search_and_skip_reasons(tmp_path, media, tiny_space_dir):
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    rep = eng.index([media["red"].parent.parent])
    skipped = dict(rep.skipped)
    assert set(skipped) == {str(media[k]) for k in ("bad_jpg", "empty", "trunc", "bad_wav", "binary_txt")}
    assert "0 bytes" in skipped[str(media["empty"])]
    assert "binary" in skipped[str(media["binary_txt"])]
    assert rep.added["image"] == 10 and rep.added["text"] >= 2
    assert rep.added["audio"] == 1 + 1 + 3  # 1.5 s, 1 s, 5 s long (2 s windows: 0-2, 2-4, 3-5)
    _consistent(eng)
    # the same image as a query finds itself first among images
    hits = eng.search(image=media["blue"], types=["image"], k=3)
    assert hits[0].path == str(media["blue"]) and hits[0].score == pytest.approx(1.0, abs=1e-4)
    # default result types are the other modalities
    assert all(h.modality != "image" for h in eng.search(image=media["blue"], k=20))
    assert {h.modality for h in eng.search("a red circle", k=100)} == {"image", "audio"}
    texts = eng.search("a red circle", k=50, types=["text"])
    assert texts and all(h.modality == "text" and h.text for h in texts)
    assert all(h.locator.keys() >= {"start", "end", "line"} for h in texts)
    audio = eng.search("a tone", types="audio", k=50)
    assert all(set(h.locator) == {"start", "end"} for h in audio)
    st = eng.stats()
    assert st["items_total"] == st["vectors"] and st["files_skipped"] == 5
    eng.close()


def test_incremental_add_modify_delete_rename_copy(tmp_path, media, tiny_space_dir):
    root = media["red"].parent.parent
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    eng.index([root])
    n0 = eng.stats()["items_total"]
    # nothing changed: nothing embedded
    rep = eng.index([root])
    assert rep.items_added == 0 and rep.files_new == 0 and rep.files_unchanged > 0
    assert len(rep.still_skipped) == 5
    # add one, modify one, delete one, rename one, copy one
    shape_image("yellow", "square").save(root / "photos" / "new.png")
    shape_image("green", "square").save(media["red"])  # modified in place
    os.utime(media["red"], ns=(1, 1))
    os.remove(media["blue"])
    os.rename(media["jpeg"], root / "photos" / "renamed.jpg")
    shutil.copy(media["wav"], root / "sounds" / "copy.wav")
    ids_before = {h.path: h.id for h in eng.search("x", types=["image"], k=100)}
    rep = eng.index([root])
    assert rep.files_new == 1 and rep.files_changed == 1 and rep.files_removed == 1
    assert rep.files_moved == 1 and rep.files_copied == 1
    assert rep.added == {"image": 2}  # the new file and the modified one; rename and copy reuse vectors
    _consistent(eng)
    paths = {h.path: h.id for h in eng.search("x", types=["image"], k=100)}
    assert str(media["blue"]) not in paths and str(media["jpeg"]) not in paths
    assert paths[str(root / "photos" / "renamed.jpg")] == ids_before[str(media["jpeg"])]  # same vector, same id
    copies = [h for h in eng.search("x", types=["audio"], k=100) if h.path.endswith("copy.wav")]
    assert len(copies) == 1
    assert eng.stats()["items_total"] == n0 + 1 + 1 - 1  # +new image, +copied wav window, -blue; modified replaced
    # the modified image is found with its new content
    q = eng.space.image.encode([shape_image("green", "square")])[0]
    assert eng.search_vector(q, k=1, types=["image"])[0].path == str(media["red"])
    # remove a folder from the index
    assert eng.remove([root / "sounds"]) == 5  # four sounds and the skipped corrupt one
    assert not eng.search("x", types=["audio"], k=10)
    _consistent(eng)
    eng.close()


def test_reconcile_after_interrupted_commit(tmp_path, media, tiny_space_dir):
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    eng.index([media["red"].parent])
    # vectors saved but catalog never committed: orphan vectors
    v = np.zeros((1, eng.dim), np.float32)
    v[0, 0] = 1
    eng.store.vectors.add(np.array([10_000]), v)
    # catalog item whose vector is lost
    victim = eng.search("x", types=["image"], k=1)[0]
    eng.store.vectors.remove(np.array([victim.id]))
    eng.store.vectors.save(eng.store.vectors_path)
    eng.close()
    eng = mmr.Engine(tmp_path / "idx")
    rep = eng.index([media["red"].parent])
    assert rep.repaired == {"orphan_vectors": 1, "items_without_vector": 1, "files_reset": 1}
    assert rep.added == {"image": 1}  # the reset file is embedded again
    _consistent(eng)
    assert victim.path in {h.path for h in eng.search("x", types=["image"], k=100)}


def test_hits_whose_rows_vanish_are_replaced(tmp_path, media, tiny_space_dir):
    """Rows are fetched for the top k only; an item whose row vanished after the id filter was made (another
    process's commit) is dropped and the next candidates fill the k slots."""
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    eng.index([media["red"].parent])
    n = len(eng.store.catalog.item_ids(("image",)))
    before = eng.search("x", types=["image"], k=2)
    assert n >= 3 and len(before) == 2
    eng.store.catalog.db.execute("DELETE FROM items WHERE id=?", (before[0].id,))  # behind the filter's back
    after = eng.search("x", types=["image"], k=2)
    assert [h.id for h in after][:1] == [before[1].id] and len(after) == 2 and before[0].id not in {h.id for h in after}
    eng.close()


def test_space_without_audio_skips_audio_with_reason(tmp_path, media, tiny_space_noaudio_dir):
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_noaudio_dir))
    rep = eng.index([media["wav"].parent])
    reasons = {r for _, r in rep.skipped}
    assert any("no audio tower" in r for r in reasons)
    with pytest.raises(UsageError, match="no audio tower"):
        eng.search(audio=media["wav"])


def test_space_mismatch_is_refused(tmp_path, media, tiny_space_dir, tiny_space_noaudio_dir):
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    eng.index([media["red"]])
    eng.close()
    with pytest.raises(SpaceMismatchError) as e:
        mmr.Engine(tmp_path / "idx", model=str(tiny_space_noaudio_dir))
    assert "test-tiny" in str(e.value) and "test-tiny-noaudio" in str(e.value)
    # the same space is accepted, and no model is needed once the index exists
    mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir)).close()
    mmr.Engine(tmp_path / "idx").close()


def test_changed_weights_under_an_index_are_detected(tmp_path, media, tiny_space_dir):
    space = tmp_path / "space"
    shutil.copytree(tiny_space_dir, space)
    eng = mmr.Engine(tmp_path / "idx", model=str(space))
    eng.index([media["red"]])
    eng.close()
    from tiny_space import make_tiny_space

    make_tiny_space(space, seed=1)  # same config, other weights
    eng = mmr.Engine(tmp_path / "idx", readonly=True)
    with pytest.raises(SpaceMismatchError, match="fingerprint"):
        eng.search("a red circle")


def test_missing_weights_error_is_clear_and_creates_nothing(tmp_path):
    with pytest.raises(MissingWeightsError) as e:
        mmr.Engine(tmp_path / "idx", model="ViT-B-32:laion2b_s34b_b79k")
    msg = str(e.value)
    assert "ViT-B-32:laion2b_s34b_b79k" in msg and "--model ViT-B-32:/path/to/" in msg
    assert not (tmp_path / "idx").exists()
    with pytest.raises(MissingWeightsError, match="not found"):
        mmr.Engine(tmp_path / "idx", model="ViT-B-32:/no/such/file.pt")
    space = tmp_path / "sp"
    space.mkdir()
    (space / "open_clip_config.json").write_text('{"model_cfg": {}}')
    with pytest.raises(MissingWeightsError, match="no weights file"):
        mmr.Engine(tmp_path / "idx", model=str(space))


def test_input_validation(tmp_path, media, tiny_space_dir):
    with pytest.raises(IndexNotFoundError):
        mmr.Engine(tmp_path / "nope", readonly=True)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x").write_text("x")
    with pytest.raises(IndexNotFoundError, match="non-empty folder"):
        mmr.Engine(tmp_path / "junk", model=str(tiny_space_dir))
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    eng.index([media["red"]])
    for bad, match in [(dict(text=""), "empty"), (dict(text="x", k=0), "k must"), (dict(text="x", k="3"), "k must"),
                       (dict(text="x", types=["sculpture"]), "unknown result type"), (dict(), "exactly one"),
                       (dict(text="x", image=media["red"]), "exactly one"),
                       (dict(image=tmp_path / "missing.png"), "not found"),
                       (dict(image=media["bad_jpg"]), "cannot use the image")]:
        with pytest.raises(UsageError, match=match):
            eng.search(**bad)
    with pytest.raises(UsageError, match="no such file"):
        eng.index([tmp_path / "missing"])


def test_registered_space_by_name(tmp_path, media, tiny_space_dir):
    spec = mmr.resolve_model_arg(str(tiny_space_dir))
    mmr.register_space(spec.__class__.from_dict({**spec.to_dict(), "name": "test-registered"}), replace=True)
    assert "test-registered" in [s.name for s in mmr.list_spaces()]
    eng = mmr.Engine(tmp_path / "idx", model="test-registered")
    assert eng.stats()["space"]["name"] == "test-registered"
