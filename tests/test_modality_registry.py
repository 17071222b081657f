"""Adding a modality is one module plus a registry entry: a toy `vector` modality (.npy files holding a
vector already in the space, e.g. computed elsewhere) is indexed, searched in both directions and shown by
the CLI, with no change to any other module."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

import mmretrieval as mmr
from mmretrieval.cli import main
from mmretrieval.encoders.base import Encoder
from mmretrieval.errors import DecodeError
from mmretrieval.modalities import Item, Modality, modality_of, register_modality, unregister_modality
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
