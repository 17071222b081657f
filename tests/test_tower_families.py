"""Tower families are plugins: a space is any set of registered families covering its modalities, with one declared
dimension. A toy CLAP-like family (text + audio, no images, no open_clip) forms a space that indexes, searches both
ways, lists and checks its weights, and refuses what it cannot do; collisions are errors; the shipped space's
fingerprints are what they were before families were pluggable."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import mmretrieval as mmr
from mmretrieval.encoders.waves import load_audio, windows
from mmretrieval.encoders.base import Encoder
from mmretrieval.errors import MissingWeightsError, SpaceError, UnsupportedPrecisionError
from mmretrieval.space.runtime import Space
from mmretrieval.space.spec import SpaceSpec
from mmretrieval.space.towers import TOWER_FAMILIES, TowerFamily, fetch_weights, register_tower_family, weights_status
from mmretrieval.space.weights import WeightsFile
from mmretrieval.synth import shape_image, tone

BANDS = {"low": (0, 400), "mid": (400, 1000), "high": (1000, 4000)}


def _word_vector(word: str, dim: int, seed: int) -> np.ndarray:
    h = int.from_bytes(hashlib.sha256(f"{seed}:{word.lower()}".encode()).digest()[:8], "little")
    return np.random.default_rng(h).normal(size=dim).astype(np.float32)


class ToyText(Encoder):
    """Bag of words: each word a fixed random vector (the 'weights' seed), summed."""

    modality = "text"

    def __init__(self, dim: int, seed: int) -> None:
        super().__init__(dim, torch.device("cpu"))
        self.seed = seed
        self.max_passage_tokens = 32

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def _encode_batch(self, batch):
        return np.stack([sum((_word_vector(w.strip(".,"), self.dim, self.seed) for w in t.split()),
                             np.zeros(self.dim, np.float32)) for t in batch])


class ToyAudio(Encoder):
    """A clip's dominant frequency band, as the vector of that band's word: the shared space of this toy pair."""

    modality = "audio"
    sample_rate, window_s, hop_s = 8000, 1.0, 1.0

    def __init__(self, dim: int, seed: int) -> None:
        super().__init__(dim, torch.device("cpu"))
        self.seed = seed

    def _band(self, wave: np.ndarray) -> str:
        spectrum = np.abs(np.fft.rfft(wave))
        f = float(np.fft.rfftfreq(wave.size, 1 / self.sample_rate)[int(np.argmax(spectrum))])
        return next(b for b, (lo, hi) in BANDS.items() if lo <= f < hi)

    def _encode_batch(self, batch):
        waves = [load_audio(b, self.sample_rate) if isinstance(b, (str, Path)) else np.asarray(b) for b in batch]
        return np.stack([_word_vector(self._band(w), self.dim, self.seed) for w in waves])

    def encode_pooled(self, window_waves):
        v = self.encode(list(window_waves)).mean(axis=0)
        return (v / np.linalg.norm(v)).astype(np.float32)

    def encode_clip(self, item):
        wave = load_audio(item, self.sample_rate)
        return self.encode_pooled([w.samples for w in windows(wave, self.sample_rate, self.window_s, self.hop_s)])


class ToyClapFamily(TowerFamily):
    name = "toy-clap"
    modalities = ("text", "audio")
    precisions = ("fp32",)

    def _file(self, tower) -> Path:
        return Path(tower.config["weights"])

    def weights(self, tower, space_name):
        p = self._file(tower)
        return [WeightsFile("text+audio", str(p) if p.is_file() else None, p.stat().st_size if p.is_file() else None,
                            str(p), "")]

    def identity(self, tower, space):
        p = self._file(tower)
        if not p.is_file():
            raise MissingWeightsError(f"the toy-clap weights of space {space.spec.name!r} are missing: put them at {p}")
        return {"config": {k: v for k, v in tower.config.items() if k != "weights"},
                "weights": "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest()}

    def load(self, tower, space):
        seed = json.loads(self._file(tower).read_text())["seed"]
        return {"text": ToyText(space.dim, seed), "audio": ToyAudio(space.dim, seed)}


@pytest.fixture
def toy_family():
    register_tower_family(ToyClapFamily())
    yield
    TOWER_FAMILIES.pop("toy-clap", None)


def _space_dir(root: Path, **extra) -> Path:
    d = root / "toy-space"
    d.mkdir(exist_ok=True)
    (d / "clap.json").write_text(json.dumps({"seed": 7}))
    (d / "space.json").write_text(json.dumps({"name": "toy-clap-space", "dim": 16, "towers": [
        {"name": "clap", "family": "toy-clap", "modalities": ["text", "audio"],
         "config": {"weights": str(d / "clap.json")}}], **extra}))
    return d


def test_a_text_and_audio_family_forms_a_space_without_clip(toy_family, tmp_path):
    space_dir = _space_dir(tmp_path)
    lib = tmp_path / "lib"
    lib.mkdir()
    for band, hz in (("low", 200), ("mid", 700), ("high", 2500)):
        sf.write(lib / f"{band}.wav", tone(hz, 2.0, 8000), 8000)
        (lib / f"{band}.txt").write_text(f"A {band} beep.")
    shape_image("red").save(lib / "red.png")

    eng = mmr.Engine(tmp_path / "idx", model=str(space_dir))
    assert eng.spec.clip is None and eng.space.modalities == ("text", "audio") and eng.dim == 16
    assert set(eng.space.tower_fingerprints) == {"clap"}
    rep = eng.index([lib])
    assert dict(rep.added) == {"text": 3, "audio": 6}
    assert rep.skipped == [(str(lib / "red.png"), "this space has no image tower")]
    assert eng.search("a high beep", types=["audio"], k=1)[0].path == str(lib / "high.wav")
    assert eng.search(audio=str(lib / "low.wav"), types=["text"], k=1)[0].path == str(lib / "low.txt")
    fp = eng.space.fingerprint
    eng.close()
    with mmr.Engine(tmp_path / "idx", model=str(space_dir), readonly=True) as again:  # the same space again
        assert again.space.fingerprint == fp
    (space_dir / "clap.json").write_text(json.dumps({"seed": 8}))  # other weights: another space
    with pytest.raises(mmr.SpaceMismatchError):
        mmr.Engine(tmp_path / "idx", model=str(space_dir))


def test_the_family_lists_and_fetches_its_own_weights(toy_family, tmp_path):
    space_dir = _space_dir(tmp_path)
    spec = mmr.resolve_model_arg(str(space_dir))
    [w] = weights_status(spec)
    assert (w.role, w.found) == ("text+audio", str(space_dir / "clap.json"))
    (space_dir / "clap.json").unlink()
    [w] = weights_status(spec)
    assert w.found is None and w.put_at == str(space_dir / "clap.json")
    with pytest.raises(MissingWeightsError, match="put them at"):
        mmr.Engine(tmp_path / "idx", model=spec)
    with pytest.raises(MissingWeightsError, match="clap.json"):
        fetch_weights(spec, progress=False)


def test_precisions_a_family_cannot_run_are_refused_and_auto_keeps_to_its_own(toy_family, tmp_path):
    spec = mmr.resolve_model_arg(str(_space_dir(tmp_path)))
    assert Space(spec, precision="auto").precision["audio"] == "fp32"
    with pytest.raises(UnsupportedPrecisionError, match="toy-clap tower 'clap' runs in fp32, not bf16"):
        Space(spec, precision="audio=bf16")


def test_collisions_and_a_missing_dimension_are_errors(toy_family, tmp_path, tiny_space_dir):
    d = _space_dir(tmp_path)
    with pytest.raises(SpaceError, match="must declare its dimension"):
        SpaceSpec.from_dict({**json.loads((d / "space.json").read_text()), "dim": None}, base_dir=d)
    both = json.loads((tiny_space_dir / "space.json").read_text())
    both["towers"] = [{"name": "clap", "family": "toy-clap", "modalities": ["text", "audio"],
                       "config": {"weights": str(d / "clap.json")}}]
    with pytest.raises(SpaceError, match="towers 'clip' and 'clap' both encode text"):
        SpaceSpec.from_dict(both, base_dir=tiny_space_dir)
    odd = {**json.loads((d / "space.json").read_text())}
    odd["towers"] = [{**odd["towers"][0], "modalities": ["text", "image"]}]
    with pytest.raises(SpaceError, match="declared for text, image, but the toy-clap family encodes text, audio"):
        Space(SpaceSpec.from_dict(odd, base_dir=d))


@pytest.mark.parametrize("precision,fingerprint", [("fp32", "e772885764c0a261"), ("bf16", "00c4ea9b709a3ce9"),
                                                   ("image=int8", "a2291ac9e8eeae85")])
def test_the_shipped_space_keeps_its_fingerprints(precision, fingerprint):
    """Measured before tower families were pluggable: an index built then must open now."""
    from mmretrieval.space.precision import parse_precision
    from mmretrieval.space.runtime import space_identity
    from mmretrieval.space.spec import fingerprint_of

    spec = mmr.resolve_model_arg("tiny")
    # measured on a CPU with native bf16, where auto puts the audio tower in bf16 (fixed here: no detection)
    chosen = parse_precision(precision, native_bf16=True)
    assert fingerprint_of(space_identity(spec, precision=chosen)) == fingerprint
