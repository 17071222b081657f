"""Reduced precision: chosen by the CPU, overridable, remembered by the index, and close to fp32.

The speed is measured by scripts/bench/; these tests pin what must not change: the vectors (cosine
to fp32) and the results (top-10 on the shipped model's held-out eval).
"""
import json

import numpy as np
import pytest

import mmretrieval as mmr
from mmretrieval.errors import SpaceMismatchError, UsageError
from mmretrieval.space.runtime import Space
from mmretrieval.space.precision import auto_precision, describe, parse_precision
from mmretrieval.train.corpus import generate


def test_auto_follows_native_bf16_and_measured_int8():
    assert auto_precision(native_bf16=True, int8_faster=False) == {"text": "fp32", "image": "bf16", "audio": "bf16"}
    assert auto_precision(native_bf16=False, int8_faster=False) == {"text": "fp32", "image": "fp32", "audio": "fp32"}
    assert auto_precision(native_bf16=True, int8_faster=True) == {"text": "fp32", "image": "int8", "audio": "bf16"}
    assert parse_precision("auto", native_bf16=False, int8_faster=False) == {"text": "fp32", "image": "fp32",
                                                                              "audio": "fp32"}
    # a GPU: fp16 image and audio towers, text in fp32 (so text queries match a CPU's), no calibration
    assert auto_precision("cuda", native_bf16=True, int8_faster=True) == {"text": "fp32", "image": "fp16",
                                                                           "audio": "fp16"}
    assert parse_precision("auto", "cuda:1") == {"text": "fp32", "image": "fp16", "audio": "fp16"}


def test_parse_precision_forms(monkeypatch):
    assert parse_precision("bf16") == {"text": "bf16", "image": "bf16", "audio": "bf16"}
    assert parse_precision("FP32") == {"text": "fp32", "image": "fp32", "audio": "fp32"}
    assert parse_precision("text=bf16", native_bf16=False, int8_faster=False) == {"text": "bf16", "image": "fp32",
                                                                                   "audio": "fp32"}
    assert parse_precision("image=fp32,audio=bf16", native_bf16=True)["image"] == "fp32"
    assert parse_precision("int8") == {"text": "int8", "image": "int8", "audio": "fp32"}  # audio's int8 by name only
    assert parse_precision("fp16") == {"text": "fp16", "image": "fp16", "audio": "fp16"}
    assert parse_precision("image=fp16", native_bf16=True, int8_faster=False) == {"text": "fp32", "image": "fp16",
                                                                                   "audio": "bf16"}
    assert parse_precision("audio=int8", native_bf16=True, int8_faster=False)["audio"] == "int8"
    monkeypatch.setenv("MMR_PRECISION", "bf16")
    assert parse_precision(None)["text"] == "bf16"
    for p in ({"text": "fp32", "image": "bf16", "audio": "fp32"}, {"text": "bf16", "image": "bf16", "audio": "bf16"}):
        assert parse_precision(describe(p)) == p


@pytest.mark.parametrize("bad, says", [("fp8", "auto, fp32, bf16, fp16, int8"), ("video=bf16", "text, image, audio"),
                                       ("audio=int4", "auto, fp32, bf16, fp16, int8")])
def test_bad_precision_names_the_valid_ones(bad, says):
    with pytest.raises(UsageError, match=says):
        parse_precision(bad)


def test_fingerprint_records_reduced_towers_only(tiny_space_dir):
    spec = mmr.resolve_model_arg(str(tiny_space_dir))
    fp32 = Space(spec, precision="fp32")
    img = Space(spec, precision="image=bf16,audio=fp32,text=fp32")
    assert "precision" not in fp32.identity  # fp32 keeps the fingerprint it always had
    assert img.identity["precision"] == {"image": "bf16"}
    assert len({fp32.fingerprint, img.fingerprint, Space(spec, precision="bf16").fingerprint}) == 3
    noaudio = mmr.SpaceSpec.from_dict({**spec.to_dict(), "audio": None})
    # a tower the space lacks does not count
    assert "audio" not in Space(noaudio, precision="audio=bf16").identity.get("precision", {})


def test_index_remembers_its_precision(tiny_space_dir, tmp_path, monkeypatch):
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.txt").write_text("a red circle")
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir),
                     precision="text=fp32,image=bf16,audio=fp32")
    eng.index([media])
    assert eng.stats()["space"]["precision"] == "text=fp32,image=bf16,audio=fp32"
    eng.close()
    monkeypatch.setenv("MMR_PRECISION", "fp32")  # the environment chooses for new indexes only
    again = mmr.Engine(tmp_path / "idx")
    assert again.space.precision["image"] == "bf16"
    assert again.space.fingerprint == json.loads((tmp_path / "idx" / "space.json").read_text())["fingerprint"]
    assert again.search("a red circle", types=["text"])[0].path.endswith("a.txt")
    again.close()
    mmr.Engine(tmp_path / "idx", precision="text=fp32,image=bf16,audio=fp32").close()  # the same: accepted
    with pytest.raises(SpaceMismatchError, match="precision text=fp32,image=bf16,audio=fp32, not fp32"):
        mmr.Engine(tmp_path / "idx", precision="fp32")


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    root = tmp_path_factory.mktemp("heldout")
    generate(root, seed=2000, images_per_class=6, sounds_per_class=6)
    rows = [json.loads(line) for line in (root / "pairs.jsonl").read_text().splitlines()]
    return root, rows


def _top10_same_up_to_ties(ref: np.ndarray, fast: np.ndarray, eps: float) -> None:
    """Per query: the fast top-10 is the reference top-10, except swaps of items whose reference scores
    are within `eps` of each other (near-ties that any rounding may reorder)."""
    top_ref = np.argsort(-ref, axis=1, kind="stable")[:, :10]
    top_fast = np.argsort(-fast, axis=1, kind="stable")[:, :10]
    for q in range(ref.shape[0]):
        tenth = ref[q, top_ref[q, -1]]
        for a, b in zip(top_ref[q], top_fast[q]):
            if a != b:
                assert abs(ref[q, a] - ref[q, b]) < eps, (q, a, b, ref[q, a], ref[q, b])
        assert (ref[q, top_fast[q]] >= tenth - eps).all()


@pytest.mark.parametrize("fmt", ["bf16", "fp16"])
def test_reduced_towers_match_fp32_on_shipped_heldout(heldout, fmt):
    """bf16 image and audio towers (what auto picks on native-bf16 CPUs) against fp32, same weights; and fp16
    as a CPU computes it (an index built on a GPU, updated without one: tests/test_cuda.py has the GPU's)."""
    reduced_matches_fp32(heldout, fmt, "cpu")


def reduced_matches_fp32(heldout, fmt: str, device: str) -> None:
    """Image and audio towers in `fmt` on `device` against fp32 on the CPU: cosine >= 0.999 per item, and the
    top-10 of every text query the same up to near-ties."""
    root, rows = heldout
    spec = mmr.resolve_model_arg("tiny")
    ref, fast = Space(spec, precision="fp32"), Space(spec, precision=f"image={fmt},audio={fmt}", device=device)
    texts = sorted({r["caption"] for r in rows})
    t = ref.text.encode(texts)
    if device == "cpu":
        np.testing.assert_array_equal(t, fast.text.encode(texts))  # text stays fp32
    else:
        assert np.abs(t - fast.text.encode(texts)).max() < 1e-3  # fp32 on another device: float rounding
    images = sorted({str(root / r["image"]) for r in rows if r.get("image")})
    ia, ib = ref.image.encode(images), fast.image.encode(images)
    assert np.einsum("ij,ij->i", ia, ib).min() >= 0.999, np.einsum("ij,ij->i", ia, ib).min()
    _top10_same_up_to_ties(t @ ia.T, t @ ib.T, eps=0.01)
    _top10_same_up_to_ties(ia @ t.T, ib @ t.T, eps=0.01)
    sounds = sorted({str(root / r["audio"]) for r in rows if r.get("audio")})[:60]
    aa = np.stack([ref.audio.encode_clip(p) for p in sounds])
    ab = np.stack([fast.audio.encode_clip(p) for p in sounds])
    assert np.einsum("ij,ij->i", aa, ab).min() >= 0.999, np.einsum("ij,ij->i", aa, ab).min()
    _top10_same_up_to_ties(t @ aa.T, t @ ab.T, eps=0.01)


def test_bf16_text_close_to_fp32(tiny_space):
    texts = ["a red circle", "three small blue squares on a white background", "x" * 200]
    a = tiny_space.text.encode(texts)
    b = Space(tiny_space.spec, precision="text=bf16").text.encode(texts)
    assert np.einsum("ij,ij->i", a, b).min() >= 0.999
