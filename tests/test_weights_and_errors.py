"""Where weights are found (every standard cache), `mmr fetch`, short sounds on every tower, and errors
that name the problem with the right type (each used to show as "internal error" or a wrong category)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import soundfile as sf
import torch

import mmretrieval as mmr
from mmretrieval.cli import main
from mmretrieval.errors import MissingWeightsError, UsageError, WeightsMismatchError
from mmretrieval.space.towers import weights_status
from mmretrieval.space.weights import resolve_audio_weights, resolve_clip
from mmretrieval.synth import shape_image, tone


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_tag_weights_put_by_hand_in_the_project_cache_are_found(empty_hub, tmp_path):
    """The place the missing-weights message names is a place the resolver looks."""
    with pytest.raises(MissingWeightsError) as e:
        resolve_clip("ViT-B-32", "laion2b_s34b_b79k")
    target = tmp_path / "cache" / "open_clip" / "ViT-B-32" / "laion2b_s34b_b79k" / "open_clip_model.safetensors"
    assert f"put it at {target}" in str(e.value)
    assert "huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in str(e.value)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"weights")
    r = resolve_clip("ViT-B-32", "laion2b_s34b_b79k")
    assert r.checkpoint == str(target) and r.identity.startswith("open_clip:ViT-B-32:laion2b_s34b_b79k:")


def test_open_clip_url_cache_is_checked_against_the_url_checksum(empty_hub, tmp_path, monkeypatch):
    """A file in open_clip's (and OpenAI clip's) URL cache is used only if it is the file the URL names."""
    from mmretrieval.space import open_clip_catalog

    data = b"placeholder weights"
    digest = hashlib.sha256(data).hexdigest()
    cfg = {"url": f"https://openaipublic.azureedge.net/clip/models/{digest}/ViT-B-32.pt", "quick_gelu": True}
    models = open_clip_catalog.catalog().models  # open_clip's registry, with one tag that only has a URL
    monkeypatch.setattr(open_clip_catalog, "catalog",
                        lambda: open_clip_catalog.Catalog(models, {"ViT-B-32": {"urlonly": cfg}}))
    cached = tmp_path / "home" / ".cache" / "clip" / "ViT-B-32.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(data)
    assert resolve_clip("ViT-B-32", "urlonly").checkpoint == str(cached)
    cached.write_bytes(b"something else")
    with pytest.raises(MissingWeightsError, match="does not match the checksum in its download URL"):
        resolve_clip("ViT-B-32", "urlonly")


def test_wav2clip_downloaded_by_its_own_package_is_found(tmp_path, monkeypatch):
    """wav2clip.get_model() saves the release through torch.hub; a user who ran it has the file there."""
    spec = mmr.resolve_model_arg("vit-b-32-openai+wav2clip")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = tmp_path / "torch" / "hub" / "checkpoints" / "Wav2CLIP.pt"
    hub.parent.mkdir(parents=True)
    hub.write_bytes(b"w")
    assert resolve_audio_weights(spec.audio.weights, spec.name) == hub
    assert [w.found for w in weights_status(spec)][1] == str(hub)


@pytest.fixture
def fetchable_space(tmp_path, tiny_space_dir, monkeypatch):
    """A space whose audio tower is a download (a file:// URL standing in for the release)."""
    release = tmp_path / "release" / "tower.pt"
    release.parent.mkdir()
    release.write_bytes((tiny_space_dir / "audio_tower.pt").read_bytes())
    spec = json.loads((tiny_space_dir / "space.json").read_text())
    spec["name"] = "test-fetchable"
    spec["clip"] = {"config": str(tiny_space_dir / "open_clip_config.json")}
    spec["audio"]["weights"] = {"cache": "towers/tower.pt", "url": release.as_uri(),
                                "sha256": hashlib.sha256(release.read_bytes()).hexdigest()}
    d = tmp_path / "spaces" / "fetchable"
    d.mkdir(parents=True)
    (d / "space.json").write_text(json.dumps(spec))
    return d


def test_fetch_downloads_what_is_missing(fetchable_space, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MMR_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    status = weights_status(mmr.resolve_model_arg(str(fetchable_space)))
    assert status[0].found and status[1].found is None and status[1].source.startswith("file://")
    assert main(["fetch", str(fetchable_space), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "ready" in out and str(tmp_path / "cache" / "towers" / "tower.pt") in out
    assert (tmp_path / "cache" / "towers" / "tower.pt").is_file()
    assert main(["fetch", str(fetchable_space)]) == 0  # nothing left to do


def test_fetch_offline_names_each_file_and_place(fetchable_space, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MMR_OFFLINE", "1")
    assert main(["fetch", str(fetchable_space)]) == 1
    err = capsys.readouterr().err
    assert "offline" in err and f"put it at {tmp_path / 'cache' / 'towers' / 'tower.pt'}" in err


@pytest.mark.parametrize("space_name", ["tiny", "vit-b-32-openai+wav2clip"])
def test_every_audio_tower_takes_sounds_as_short_as_50_ms(space_name, tmp_path):
    """Each registered audio architecture (the shipped conv tower and Wav2CLIP, with placeholder weights)
    encodes 50 ms and 100 ms clips; a clip shorter than a tower accepts is repeated up to that length."""
    from mmretrieval.encoders.audio import AudioEncoder

    spec = mmr.resolve_model_arg(space_name).audio
    weights = tmp_path / "w.pt"
    if space_name == "tiny":
        weights = spec.weights
    else:
        from mmretrieval.encoders.audio_tower import build_audio_tower

        torch.save(build_audio_tower(spec.config).state_dict(), weights)
    enc = AudioEncoder.from_weights(weights, spec, spec.config.get("embed_dim", 512), torch.device("cpu"))
    sr = spec.sample_rate
    clips = [tone(1000, 0.05, sr), tone(700, 0.1, sr), tone(300, 1.0, sr)]
    v = enc.encode(clips)
    assert v.shape == (3, enc.dim) and np.isfinite(v).all()
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    short = clips[0]
    if short.size < enc.min_samples:  # padded by repetition: same as encoding the repeated clip
        assert float(v[0] @ enc.encode([np.resize(short, enc.min_samples)])[0]) > 0.9999


def test_short_sound_files_are_indexed(tmp_path):
    """The shipped space's tower needs 0.15 s; 50 ms and 0.1 s files are indexed, 10 ms is skipped with
    a reason about the file."""
    d = tmp_path / "fx"
    d.mkdir()
    sf.write(d / "click.wav", tone(1000, 0.05, 44100), 44100)
    sf.write(d / "blip.wav", tone(700, 0.1, 16000), 16000)
    sf.write(d / "tick.wav", tone(700, 0.01, 16000), 16000)
    eng = mmr.Engine(tmp_path / "idx", model="tiny")
    rep = eng.index([d])
    assert rep.added["audio"] == 2
    assert [(p.rsplit("/", 1)[1], r) for p, r in rep.skipped] == [("tick.wav", "audio too short: 0.010 s (minimum 0.05 s)")]


def test_an_encoder_failure_is_our_bug_not_the_files(tmp_path, monkeypatch, tiny_space_dir):
    """The reason a user sees names no framework internals; the run goes on and the other files are indexed."""
    from mmretrieval.encoders.image import ImageEncoder
    from mmretrieval.ingest.indexer import ENCODER_BUG

    d = tmp_path / "p"
    d.mkdir()
    for c in ("red", "blue", "green"):
        shape_image(c).save(d / f"{c}.png")
    real = ImageEncoder._encode_batch

    def flaky(self, batch):
        if any(getattr(b, "shape", None) is not None and float(b.float().mean()) == bad for b in batch):
            raise RuntimeError("Given input size: (128x16x1). Calculated output size: (128x8x0)")
        return real(self, batch)

    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    bad = float(eng.space.image.preprocess(eng.space.image.load(d / "blue.png")).float().mean())
    monkeypatch.setattr(ImageEncoder, "_encode_batch", flaky)
    rep = eng.index([d])
    assert rep.added["image"] == 2
    assert rep.skipped == [(str(d / "blue.png"), ENCODER_BUG)]
    assert rep.files_new == 2  # counts add up: the refused file is skipped, not new
    assert "RuntimeError" not in ENCODER_BUG and "internal error" in ENCODER_BUG
    assert eng.check()["consistent"]


def test_memory_budget_too_small_is_a_usage_error(tmp_path, tiny_space_dir, capsys):
    d = tmp_path / "p"
    d.mkdir()
    shape_image("red").save(d / "red.png")
    idx = tmp_path / "idx"
    assert main(["index", str(d), "--index", str(idx), "--model", str(tiny_space_dir)]) == 0
    capsys.readouterr()
    assert main(["index", str(d), "--index", str(idx), "--memory-budget", "10"]) == 2
    err = capsys.readouterr().err
    assert "too small" in err and "larger --memory-budget" in err and "internal error" not in err
    with pytest.raises(UsageError):
        mmr.Engine(idx).index([d], memory_budget=10)


def test_audio_weights_that_do_not_fit_the_config(tmp_path, tiny_space_dir, capsys):
    spec = json.loads((tiny_space_dir / "space.json").read_text())
    spec["audio"]["config"]["channels"] = [4, 4]
    spec["audio"]["weights"] = str(tiny_space_dir / "audio_tower.pt")
    spec["clip"] = {"config": str(tiny_space_dir / "open_clip_config.json")}
    d = tmp_path / "misfit"
    d.mkdir()
    (d / "space.json").write_text(json.dumps(spec))
    with pytest.raises(WeightsMismatchError, match="do not fit the tower config"):
        mmr.Engine(tmp_path / "idx", model=str(d))
    (tmp_path / "m").mkdir()
    shape_image("red").save(tmp_path / "m" / "a.png")
    assert main(["index", str(tmp_path / "m"), "--index", str(tmp_path / "idx2"), "--model", str(d)]) == 1
    err = capsys.readouterr().err
    assert "do not fit" in err and "internal error" not in err


def test_max_pixels_setting(tmp_path, monkeypatch, tiny_space_dir, capsys):
    from mmretrieval.encoders.pixels import DEFAULT_MAX_PIXELS, load_image, max_pixels

    monkeypatch.setenv("MMR_MAX_PIXELS", "")
    assert max_pixels() == DEFAULT_MAX_PIXELS  # empty means unset
    monkeypatch.setenv("MMR_MAX_PIXELS", "lots")
    with pytest.raises(UsageError, match="MMR_MAX_PIXELS='lots'"):
        max_pixels()
    d = tmp_path / "p"
    d.mkdir()
    shape_image("red").save(d / "red.png")
    assert main(["index", str(d), "--index", str(tmp_path / "idx"), "--model", str(tiny_space_dir)]) == 2
    assert "MMR_MAX_PIXELS" in capsys.readouterr().err
    # Our limit decides on both sides of Pillow's own warning line (89 MP): 100 MP passes by default.
    from PIL import Image

    big = tmp_path / "big.png"
    Image.new("L", (10_000, 10_000)).save(big)
    monkeypatch.delenv("MMR_MAX_PIXELS")
    assert load_image(big).size == (10_000, 10_000)
    monkeypatch.setenv("MMR_MAX_PIXELS", "90000000")
    with pytest.raises(mmr.DecodeError, match="100 MP exceeds 90 MP"):
        load_image(big)
    monkeypatch.setenv("MMR_MAX_PIXELS", "1e9")
    assert load_image(big, draft_to=448).size == (10_000, 10_000)


def test_clip_weights_that_do_not_fit_the_model(tiny_space_dir, capsys, tmp_path):
    """A checkpoint of another architecture is a typed error naming the file, not an internal error."""
    ckpt = tiny_space_dir / "open_clip_model.safetensors"
    with pytest.raises(WeightsMismatchError, match="do not fit the open_clip model ViT-B-32"):
        mmr.Engine(tmp_path / "idx", model=f"ViT-B-32:{ckpt}")
    (tmp_path / "m").mkdir()
    shape_image("red").save(tmp_path / "m" / "a.png")
    assert main(["index", str(tmp_path / "m"), "--index", str(tmp_path / "idx2"), "--model", f"ViT-B-32:{ckpt}"]) == 1
    err = capsys.readouterr().err
    assert str(ckpt) in err and "internal error" not in err


def test_the_weights_hash_cache_forgets_files_that_changed_or_went(tmp_path):
    """Checkpoints are hashed once per (path, size, mtime); entries of replaced or deleted files (benchmarks'
    temporary checkpoints) used to stay in ~/.cache/mmretrieval/weights-sha256.json forever."""
    import os

    from mmretrieval.space.weights import file_sha256

    cache = tmp_path / "cache" / "weights-sha256.json"
    a, b, c = (tmp_path / n for n in ("a.pt", "b.pt", "c.pt"))
    a.write_bytes(b"first weights")
    b.write_bytes(b"kept weights")
    assert file_sha256(a) == hashlib.sha256(b"first weights").hexdigest()
    file_sha256(b)
    assert len(json.loads(cache.read_text())) == 2
    a.write_bytes(b"other weights, same path")
    os.utime(a, ns=(1, 1))  # another mtime, whatever the clock's resolution
    assert file_sha256(a) == hashlib.sha256(b"other weights, same path").hexdigest()
    known = json.loads(cache.read_text())
    assert len(known) == 2 and sorted(known.values()) == sorted(
        hashlib.sha256(x).hexdigest() for x in (b"other weights, same path", b"kept weights"))
    a.unlink()
    c.write_bytes(b"new")
    file_sha256(c)
    assert sorted(json.loads(cache.read_text()).values()) == sorted(
        hashlib.sha256(x).hexdigest() for x in (b"kept weights", b"new"))


def test_missing_weights_without_a_network_say_so_at_once(empty_hub, monkeypatch):
    """Offline, huggingface_hub retried every candidate file with backoff: a first `mmr index` waited ~46 s
    before saying the weights are missing. The host is tried once first; through a proxy, the download is."""
    import time

    import huggingface_hub.constants
    import open_clip

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("MMR_OFFLINE", raising=False)
    for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    tried = []
    monkeypatch.setattr(open_clip, "download_pretrained", lambda cfg, **kw: tried.append(cfg) or pytest.fail("tried"))
    t = time.perf_counter()
    with pytest.raises(MissingWeightsError, match=r"no network to download them \(127.0.0.1:9 does not answer"):
        resolve_clip("ViT-B-32", "openai")
    assert time.perf_counter() - t < 5 and tried == []

    def unavailable(cfg, **kw):
        tried.append(cfg)
        raise OSError("407 Proxy Authentication Required")

    monkeypatch.setattr(open_clip, "download_pretrained", unavailable)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")  # only the download can tell: it is tried
    with pytest.raises(MissingWeightsError, match="download failed: 407 Proxy"):
        resolve_clip("ViT-B-32", "openai")
    assert len(tried) == 1
