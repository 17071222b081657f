"""Adding a modality is one module plus a registry entry: a toy `vector` modality (.npy files holding a
vector already in the space, e.g. computed elsewhere) is indexed, searched in both directions and shown by
the CLI, with no change to any other module."""
from __future__ import annotations

import io
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import mmretrieval as mmr
from mmretrieval.cli import main
from mmretrieval.encoders.base import Encoder
from mmretrieval.errors import DecodeError
from mmretrieval.modalities import Item, Modality, modality_of, register_modality, unregister_modality
from mmretrieval.space.towers import TowerFamily
from mmretrieval.synth import shape_image


class VectorEncoder(Encoder):
    """The vectors are already in the space: encoding is normalising."""

    modality = "vector"

    def _encode_batch(self, batch):
        return torch.from_numpy(np.stack([np.asarray(b, np.float32) for b in batch]))


def _decode(data, path, ctx):
    v = np.load(io.BytesIO(data) if data is not None else path, allow_pickle=False)
    if v.shape != (ctx.space.dim,):
        raise DecodeError(f"a vector of shape {v.shape}, not ({ctx.space.dim},)")
    return [Item({"dim": int(v.shape[0])}, None, v.astype(np.float32))], None


VECTOR = Modality(
    name="vector",
    extensions=lambda: {".npy"},
    decode=_decode,
    encoder=lambda space: VectorEncoder(space.dim, space.device),
    encode_query=lambda enc, value: enc.encode([np.load(value) if isinstance(value, str) else value])[0],
    describe=lambda locator, text: ("", f"  [{locator['dim']} dims]"),
)


@pytest.fixture
def vector_modality():
    register_modality(VECTOR)
    yield VECTOR
    unregister_modality("vector")


def test_a_registered_modality_is_indexed_searched_and_shown(vector_modality, tmp_path, tiny_space_dir, capsys):
    d = tmp_path / "lib"
    d.mkdir()
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    for c in ("red", "blue", "green"):
        shape_image(c).save(d / f"{c}.png")
        np.save(d / f"{c}.npy", eng.space.image.encode([d / f"{c}.png"])[0])  # vectors made "elsewhere"
    np.save(d / "wrong.npy", np.zeros(3, np.float32))
    assert modality_of(d / "red.npy") == "vector"
    rep = eng.index([d])
    assert rep.added["vector"] == 3 and rep.added["image"] == 3
    assert [(p.rsplit("/", 1)[1], r) for p, r in rep.skipped] == [("wrong.npy", f"a vector of shape (3,), not ({eng.dim},)")]

    hits = eng.search(image=d / "blue.png", types=["vector"], k=3)
    assert hits[0].path == str(d / "blue.npy") and hits[0].score > 0.999
    hits = eng.search(vector=str(d / "green.npy"), types=["image"], k=3)
    assert hits[0].path == str(d / "green.png") and hits[0].score > 0.999
    assert {h.modality for h in eng.search("a red shape", k=10)} == {"image", "vector"}  # the other modalities
    eng.close()

    assert main(["search", "--image", str(d / "red.png"), "--type", "vector", "--index", str(tmp_path / "idx")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "vector" in first and first.endswith(f"red.npy  [{eng.dim} dims]")
    assert main(["info", "--index", str(tmp_path / "idx"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"]["vector"] == 3


def test_unregistered_types_are_refused_with_the_valid_ones(tmp_path, tiny_space_dir):
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    with pytest.raises(mmr.UsageError, match="unknown result type 'vector'; valid: text, image, audio"):
        eng.search("x", types=["vector"])
    with pytest.raises(mmr.UsageError, match="unknown modality 'vector'"):
        eng.search(vector=np.zeros(4))


class ProjectionFamily(TowerFamily):
    """A toy tower family: its towers take vectors already in the space (the `vector` modality)."""

    name = "test-projection"

    def identity(self, tower, space):
        return {f"tower:{tower.name}": {"family": self.name, "config": tower.config}}

    def load(self, tower, space):
        return {"vector": VectorEncoder(space.dim, space.device)}


def test_a_tower_family_is_one_class_and_a_registry_entry(tmp_path, tiny_space_dir):
    """A space.json may list more towers of registered families; each tower gets its own fingerprint."""
    import json

    from mmretrieval.space.towers import TOWER_FAMILIES, register_tower_family

    register_tower_family(ProjectionFamily())
    register_modality(replace(VECTOR, encoder=lambda space: space.encoders.get("vector"),
                              missing_tower="this space has no vector tower"))
    try:
        spec = json.loads((tiny_space_dir / "space.json").read_text())
        spec["clip"] = {"config": str(tiny_space_dir / "open_clip_config.json")}
        spec["audio"]["weights"] = str(tiny_space_dir / "audio_tower.pt")
        with_tower = tmp_path / "with"
        with_tower.mkdir()
        (with_tower / "space.json").write_text(json.dumps({**spec, "name": "with-vec", "towers": [
            {"name": "vec", "family": "test-projection", "modalities": ["vector"], "config": {"v": 1}}]}))
        d = tmp_path / "lib"
        d.mkdir()
        plain = mmr.Engine(tmp_path / "plain", model=str(tiny_space_dir))
        np.save(d / "a.npy", plain.space.image.encode([shape_image("red")])[0])
        assert [r for _, r in plain.index([d]).skipped] == ["this space has no vector tower"]
        eng = mmr.Engine(tmp_path / "idx", model=str(with_tower))
        assert eng.index([d]).added["vector"] == 1
        assert eng.space.fingerprint != plain.space.fingerprint
        assert eng.space.tower_fingerprints["clip"] == plain.space.tower_fingerprints["clip"]
        assert set(eng.space.tower_fingerprints) == {"clip", "audio", "vec"}
        assert eng.spec.to_dict()["towers"][0]["family"] == "test-projection"  # the index remembers it
    finally:
        unregister_modality("vector")
        TOWER_FAMILIES.pop("test-projection", None)
