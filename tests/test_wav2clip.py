"""Our Wav2CLIP tower against the reference code of the `wav2clip` package, with random weights saved
in the published checkpoint format (no download); see wav2clip_ref.py for the torchaudio stand-in."""
import numpy as np
import pytest
import torch

import mmretrieval as mmr
from mmretrieval.encoders.audio_tower import build_audio_tower
from mmretrieval.encoders.wav2clip import PowerSpectrogram
from wav2clip_ref import wav2clip_reference


@pytest.fixture(scope="module")
def reference():
    return wav2clip_reference()


@pytest.fixture(scope="module")
def checkpoint(reference, tmp_path_factory):
    """Random weights in the published layout: audio_encoder.* + audio_transform.* (+ a training-only key)."""
    torch.manual_seed(0)
    enc = reference.ResNetExtractor(scenario="supervise")
    mlp = reference.MLPLayers(units=[512, 512, 512], dropout=0.1)
    for m in enc.modules():  # non-trivial BN statistics, as a trained model has
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    ckpt = {f"audio_encoder.{k}": v for k, v in enc.encoder.state_dict().items()}
    ckpt |= {f"audio_transform.{k}": v for k, v in mlp.state_dict().items()}
    ckpt["logit_scale_ai"] = torch.tensor(1.0)
    path = tmp_path_factory.mktemp("w2c") / "Wav2CLIP.pt"
    torch.save(ckpt, path)
    return path, ckpt


def test_our_tower_matches_the_reference(reference, checkpoint, tmp_path):
    path, ckpt = checkpoint
    ref = reference.ResNetExtractor(checkpoint=ckpt, scenario="frozen", transform=True).eval()
    ours = build_audio_tower({"arch": "wav2clip", "sample_rate": 16000, "embed_dim": 512})
    ours.load_state_dict(ours.select_state(torch.load(path, weights_only=True)), strict=True)  # as-is
    ours.eval()
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 3) / 16000
    clips = [np.sin(2 * np.pi * 440 * t), rng.standard_normal(16000 * 2) * 0.1,
             np.sin(2 * np.pi * (200 + 300 * t) * t) * (t < 1.5)]
    for clip in clips:
        x = torch.from_numpy(clip.astype(np.float32))[None]
        with torch.no_grad():
            a, b = ref(x)[0], ours(x)[0]
        cos = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
        assert cos >= 0.999, cos
        assert torch.allclose(a, b, atol=1e-3 * float(a.abs().max()))


def test_front_end_is_torchaudios_documented_spectrogram():
    """Against the definition written out in numpy: |rfft(periodic Hann · frame)|², reflect-padded by n_fft/2."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal(5000).astype(np.float32)
    ours = PowerSpectrogram()(torch.from_numpy(x)[None]).numpy()[0]
    n, hop = 512, 353
    xp = np.pad(x.astype(np.float64), n // 2, mode="reflect")
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)  # periodic Hann
    frames = 1 + (xp.size - n) // hop
    ref = np.stack([np.abs(np.fft.rfft(win * xp[i * hop:i * hop + n])) ** 2 for i in range(frames)], axis=1)
    assert ours.shape == ref.shape == (257, frames)
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-3 * ref.max())


def test_space_loads_local_weights_through_the_engine(checkpoint, tmp_path, monkeypatch):
    """With the file in the cache, the audio tower loads through the normal checkpoint path; without
    it, the error says where to put it. (The CLIP half needs ViT-B-32:openai weights, absent here.)"""
    from mmretrieval.errors import MissingWeightsError
    from mmretrieval.space.weights import resolve_audio_weights

    spec = mmr.resolve_model_arg("vit-b-32-openai+wav2clip")
    assert spec.audio.config["arch"] == "wav2clip" and spec.clip.pretrained == "openai"
    monkeypatch.setenv("MMR_CACHE", str(tmp_path / "cache"))
    with pytest.raises(MissingWeightsError) as e:
        resolve_audio_weights(spec.audio.weights, spec.name)
    msg = str(e.value)
    assert str(tmp_path / "cache" / "wav2clip" / "Wav2CLIP.pt") in msg and "v0.1.0-alpha" in msg
    (tmp_path / "cache" / "wav2clip").mkdir(parents=True)
    (tmp_path / "cache" / "wav2clip" / "Wav2CLIP.pt").write_bytes(checkpoint[0].read_bytes())
    assert resolve_audio_weights(spec.audio.weights, spec.name).is_file()
    monkeypatch.setenv("MMR_WAV2CLIP_WEIGHTS", str(checkpoint[0]))
    assert resolve_audio_weights(spec.audio.weights, spec.name) == checkpoint[0]


def test_pooled_windows_option(tiny_space_dir, tmp_path):
    """Long audio: one item per window by default, or one pooled vector per file."""
    import soundfile as sf

    from mmretrieval.synth import tone

    sf.write(tmp_path / "long.wav", tone(300, 9.0, 8000), 8000)
    a = mmr.Engine(tmp_path / "a", model=str(tiny_space_dir))
    a.index([tmp_path / "long.wav"])
    assert a.stats()["items"]["audio"] == 5  # 2 s windows: 0-2 … 6-8, and 7-9 for the tail
    b = mmr.Engine(tmp_path / "b", model=str(tiny_space_dir))
    b.index([tmp_path / "long.wav"], pool_audio=True)
    hits = b.search("x", types=["audio"], k=10)
    assert len(hits) == 1 and hits[0].locator == {"start": 0.0, "end": 9.0, "pooled_windows": 5}


def test_download_is_checked_and_remembered(checkpoint, tmp_path, monkeypatch):
    """Online path, with a file:// URL standing in for the release: checksum verified, then remembered."""
    import hashlib

    from mmretrieval.errors import MissingWeightsError
    from mmretrieval.space.weights import resolve_audio_weights

    monkeypatch.delenv("MMR_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("MMR_CACHE", str(tmp_path / "cache"))
    src = checkpoint[0]
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    ref = {"cache": "w/W.pt", "url": src.as_uri(), "sha256": "0" * 64}
    with pytest.raises(MissingWeightsError, match="checksum mismatch"):
        resolve_audio_weights(ref, "s")
    assert not (tmp_path / "cache" / "w" / "W.pt").exists()  # nothing half-written is kept
    got = resolve_audio_weights({**ref, "sha256": good}, "s")
    assert got.read_bytes() == src.read_bytes()
    # without a pinned checksum, the first download's is recorded and later corruption refused
    ref2 = {"cache": "w/X.pt", "url": src.as_uri(), "sha256": None}
    p = resolve_audio_weights(ref2, "s")
    assert (tmp_path / "cache" / "w" / "X.pt.sha256").read_text().strip() == good
    p.write_bytes(b"corrupt")
    with pytest.raises(MissingWeightsError, match="does not match its checksum"):
        resolve_audio_weights(ref2, "s")
