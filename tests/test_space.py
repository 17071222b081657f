import json

import pytest

import mmretrieval as mmr
from mmretrieval.errors import MissingWeightsError, SpaceError
from mmretrieval.space.runtime import space_identity
from mmretrieval.space.spec import fingerprint_of
from mmretrieval.space.weights import resolve_clip


def test_model_argument_forms(tiny_space_dir, tmp_path):
    assert mmr.resolve_model_arg("vit-b-32-laion").clip.pretrained == "laion2b_s34b_b79k"
    spec = mmr.resolve_model_arg("ViT-B-32:openai")
    assert spec.clip.model == "ViT-B-32" and spec.clip.pretrained == "openai"
    ck = tmp_path / "w.pt"
    ck.write_bytes(b"x")
    assert mmr.resolve_model_arg(f"ViT-B-32:{ck}").clip.pretrained == str(ck)
    d = mmr.resolve_model_arg(str(tiny_space_dir))
    assert d.name == "test-tiny" and d.audio is not None and d.audio.weights.endswith("audio_tower.pt")
    with pytest.raises(SpaceError, match="not a registered space"):
        mmr.resolve_model_arg("no-such-model")
    with pytest.raises(SpaceError, match="empty"):
        mmr.resolve_model_arg(" ")


def test_unknown_tag_lists_valid_ones():
    with pytest.raises(SpaceError, match="valid tags: .*openai"):
        resolve_clip("ViT-B-32", "no_such_tag")


def test_offline_missing_tag_weights_say_how_to_supply_them():
    with pytest.raises(MissingWeightsError) as e:
        resolve_clip("ViT-B-32", "openai")
    assert "ViT-B-32-quickgelu:/path/to/" in str(e.value)  # the OpenAI weights need QuickGELU


def test_missing_audio_weights(tiny_space_dir, tmp_path):
    spec = json.loads((tiny_space_dir / "space.json").read_text())
    spec["audio"]["weights"] = str(tmp_path / "gone.pt")
    sp = mmr.SpaceSpec.from_dict(spec, base_dir=tiny_space_dir)
    with pytest.raises(MissingWeightsError, match="audio tower weights"):
        space_identity(sp)


def test_fingerprint_is_stable_and_tracks_what_changes_vectors(tiny_space_dir):
    spec = mmr.resolve_model_arg(str(tiny_space_dir))
    a = fingerprint_of(space_identity(spec))
    assert a == fingerprint_of(space_identity(mmr.resolve_model_arg(str(tiny_space_dir))))
    d = spec.to_dict()
    d["audio"]["config"] = {**d["audio"]["config"], "window_s": 3.0}
    assert fingerprint_of(space_identity(mmr.SpaceSpec.from_dict(d))) != a
    ident = space_identity(spec)
    assert ident["metric"] == "cosine" and ident["preprocess"]["size"] == 32


def test_a_query_loads_only_the_towers_it_needs(tmp_path, monkeypatch):
    """Towers after the first load at the first need of their modality: a text or image query does not load
    the audio tower (its imports alone took ~1.6 s of a one-off `mmr search`), an audio query does, and an
    index run loads every tower before it reads a file."""
    import shutil
    from pathlib import Path

    from mmretrieval.space import towers

    demo = Path(__file__).parent.parent / "assets" / "demo"
    folder = tmp_path / "media"
    folder.mkdir()
    for name in ("images/red-circle.png", "images/blue-square.png", "docs/red-circle.txt",
                 "sounds/high-rising-beep.flac"):
        shutil.copy(demo / name, folder / Path(name).name)
    loads: list[str] = []
    load = towers.AudioFamily.load
    monkeypatch.setattr(towers.AudioFamily, "load", lambda self, t, s: loads.append(t.name) or load(self, t, s))
    mmr.Engine(tmp_path / "idx", model="tiny").index([folder])
    assert loads == ["audio"]  # a new index: every tower loads before it is created

    loads.clear()
    eng = mmr.Engine(tmp_path / "idx")
    assert eng.search("a red circle", types=["image"])[0].path.endswith("red-circle.png")
    assert eng.search(image=str(folder / "blue-square.png"), types=["text", "image"])
    assert loads == [] and "audio" not in eng.space.encoders.loaded
    assert eng.search(audio=str(folder / "high-rising-beep.flac"), types=["audio"])[0].path.endswith(".flac")
    assert loads == ["audio"] and eng.space.audio is eng.space.encoders["audio"]
    assert sorted(eng.space.encoders) == ["audio", "image", "text"] and loads == ["audio"]  # loaded once
    eng.close()

    loads.clear()
    (folder / "more.txt").write_text("a green star")
    again = mmr.Engine(tmp_path / "idx")
    assert again.index([folder]).files_new == 1 and loads == ["audio"]  # an index run loads every tower
    again.close()
