"""The first run of a real user, for every registered space (`mmr spaces`): weights sit where real
downloads land (see user_caches.py), `mmr` runs as a separate process with nothing but $HOME set, and
what it stores must equal what the reference code makes from the same cache: open_clip's own
`create_model_and_transforms(name, pretrained=TAG)` for text and images, the `wav2clip` package's own
module for the Wav2CLIP tower. A space added to the registry is added to this test by that alone.

ViT-B-32-sized placeholder weights make this the slowest test file; the placeholders are written once
and hard-linked into each space's cache locations.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import mmretrieval as mmr
from mmretrieval.synth import shape_image, tone
from user_caches import UserHome, place_space_weights

SPACES = [s.name for s in mmr.list_spaces()]
_ENTRY = Path(sys.executable).parent / "mmr"  # the console script a user runs
MMR = [str(_ENTRY)] if _ENTRY.is_file() else [sys.executable, "-m", "mmretrieval.cli"]
MIN_COSINE = 0.999


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> UserHome:
    root = tmp_path_factory.mktemp("user-home")
    return UserHome(root=root, store=tmp_path_factory.mktemp("placeholders"))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """One folder with what a user has: photos (PNG, JPEG), documents (short, long), sounds of several
    lengths and formats, down to 50 ms (many real sound effects are that short)."""
    root = tmp_path_factory.mktemp("mixed")
    for d in ("photos", "docs", "sounds"):
        (root / d).mkdir()
    shape_image("red", "square", size=256).save(root / "photos" / "red-square.png")
    shape_image("blue", "circle", size=300).save(root / "photos" / "blue-circle.png")
    shape_image("green", "triangle", size=640).resize((640, 480)).save(root / "photos" / "green.jpg", quality=92)
    (root / "docs" / "note.txt").write_text("A red square on a white background.\n")
    long = " ".join(f"Sentence number {i} is about a {c} {s} on a table." for i, (c, s) in
                    enumerate([("red", "square"), ("blue", "circle"), ("green", "star")] * 12))
    (root / "docs" / "long.md").write_text("# Shapes\n\n" + long + "\n")
    sr = 16000
    sf.write(root / "sounds" / "beep.wav", tone(440, 1.5, sr), sr)
    sf.write(root / "sounds" / "long-sweep.flac", tone(220, 7.0, 22050), 22050)
    sf.write(root / "sounds" / "click-50ms.wav", tone(1000, 0.05, 44100), 44100)
    sf.write(root / "sounds" / "blip-100ms.wav", tone(700, 0.1, sr), sr)
    return root


def mmr_run(home: UserHome, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(MMR + list(args), env=home.env(), capture_output=True, text=True, timeout=900,
                       cwd=str(home.root))
    if ok:
        assert p.returncode == 0, f"mmr {' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    return p


def reference_clip(spec, home: UserHome):
    """open_clip's own model, transform and tokenizer for the space, read from the same cache."""
    import open_clip

    if spec.clip.local_dir is not None:
        model, _, pre = open_clip.create_model_and_transforms(spec.clip.model)
    else:
        name = spec.clip.model  # weights trained with QuickGELU need open_clip's -quickgelu config, as it advises
        if open_clip.get_pretrained_cfg(name, spec.clip.pretrained).get("quick_gelu") and not name.endswith("-quickgelu"):
            name += "-quickgelu"
        model, _, pre = open_clip.create_model_and_transforms(name, pretrained=spec.clip.pretrained,
                                                              cache_dir=str(home.hub_cache))
    return model.eval(), pre, open_clip.get_tokenizer(spec.clip.model)


def reference_audio(spec, weights: Path):
    """The Wav2CLIP package's own module for its tower; for towers with no outside implementation, the
    tower class loaded from the weights file directly (no windowing, padding or batching of ours)."""
    state = torch.load(weights, map_location="cpu", weights_only=True)
    if spec.audio.config["arch"] == "wav2clip":
        from wav2clip_ref import wav2clip_reference

        return wav2clip_reference().ResNetExtractor(checkpoint=state, scenario="frozen", transform=True).eval()
    from mmretrieval.encoders.audio_tower import build_audio_tower

    tower = build_audio_tower(spec.audio.config)
    tower.load_state_dict(state)
    return tower.eval()


def stored(index_dir: Path) -> tuple[dict[int, object], dict[int, np.ndarray]]:
    """Items and their vectors as the index holds them, read without loading any model."""
    from mmretrieval.store import Store

    st = Store(index_dir, readonly=True)
    try:
        vec = st.load_vectors(int(st.space_record()["dim"]))
        ids = st.catalog.item_ids()
        items = st.catalog.items(ids.tolist())
        vecs = vec.reconstruct(np.asarray(ids, np.int64))
        return items, {int(i): vecs[k] for k, i in enumerate(ids)}
    finally:
        st.close()


def _unit(v: torch.Tensor) -> np.ndarray:
    v = v.detach().float().reshape(-1).numpy()
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("name", SPACES)
def test_registered_space_end_to_end(name, home, mixed, tmp_path):
    import librosa
    from PIL import Image

    spec = mmr.resolve_model_arg(name)
    placed = place_space_weights(spec, home)
    for p in placed:
        assert p.is_file()

    listing = {s["name"]: s for s in json.loads(mmr_run(home, "spaces", "--json").stdout)}
    assert listing[name]["ready"], listing[name]["weights"]
    found = {w["found"] for w in listing[name]["weights"]}
    assert all(str(p) in found for p in placed), (found, placed)

    idx = tmp_path / "index"
    rep = json.loads(mmr_run(home, "index", str(mixed), "--index", str(idx), "--model", name, "--json").stdout)
    has_audio = spec.audio is not None
    skipped = {Path(s["path"]).name: s["reason"] for s in rep["skipped"]}
    if has_audio:
        assert skipped == {}, skipped
        assert rep["added"]["audio"] >= 5  # long-sweep.flac is more than one window for every tower
    else:
        assert set(skipped) == {"beep.wav", "long-sweep.flac", "click-50ms.wav", "blip-100ms.wav"}
        assert all("no audio tower" in r for r in skipped.values())
    assert rep["added"]["image"] == 3 and rep["added"]["text"] >= 3  # the long document is several passages

    info = json.loads(mmr_run(home, "info", "--index", str(idx), "--json").stdout)
    assert info["space"]["name"] == name and info["items_total"] == rep["items_added"]

    # Stored vectors against the reference path, item by item.
    items, vecs = stored(idx)
    model, pre, tok = reference_clip(spec, home)
    aref = reference_audio(spec, Path(listing[name]["weights"][1]["found"])) if has_audio else None
    worst = {"image": 1.0, "text": 1.0, "audio": 1.0}
    ref_vec: dict[int, np.ndarray] = {}
    with torch.no_grad():
        for i, it in items.items():
            if it.modality == "image":
                r = _unit(model.encode_image(pre(Image.open(it.path).convert("RGB"))[None]))
            elif it.modality == "text":
                r = _unit(model.encode_text(tok([it.text])))
            else:
                sr = spec.audio.sample_rate
                wave = librosa.load(it.path, sr=sr, mono=True)[0]
                w = int(round(spec.audio.window_s * sr))
                start = int(round(it.locator["start"] * sr))
                clip = wave[-w:] if abs(it.locator["end"] - wave.size / sr) < 1e-3 and wave.size > w else wave[start:start + w]
                try:
                    r = _unit(aref(torch.from_numpy(clip)[None]))
                except RuntimeError:  # shorter than this reference accepts: only ours pads (by repetition)
                    assert clip.size < 0.2 * sr
                    continue
            ref_vec[i] = r
            worst[it.modality] = min(worst[it.modality], float(r @ vecs[i]))
    assert min(worst.values()) >= MIN_COSINE, worst

    # Searches by text, by image and by audio, as a user types them; scores equal the reference cosine.
    def check_hits(hits, query_vec):
        compared = [h for h in hits if h["id"] in ref_vec]  # all but clips too short for the reference
        assert compared
        for h in compared:
            assert abs(h["score"] - float(query_vec @ ref_vec[h["id"]])) < 5e-3, h

    hits = json.loads(mmr_run(home, "search", "a red square", "--index", str(idx), "--json").stdout)
    assert {h["modality"] for h in hits} <= {"image", "audio"}
    with torch.no_grad():
        check_hits(hits, _unit(model.encode_text(tok(["a red square"]))))
    photo = mixed / "photos" / "blue-circle.png"
    hits = json.loads(mmr_run(home, "search", "--image", str(photo), "--type", "image", "--index", str(idx),
                              "--json").stdout)
    assert hits[0]["path"] == str(photo) and hits[0]["score"] > 0.99
    hits = json.loads(mmr_run(home, "search", "--image", str(photo), "--index", str(idx), "--json").stdout)
    assert {h["modality"] for h in hits} <= {"text", "audio"}
    sound = mixed / "sounds" / "beep.wav"
    p = mmr_run(home, "search", "--audio", str(sound), "--type", "audio", "--index", str(idx), "--json", ok=has_audio)
    if has_audio:
        hits = json.loads(p.stdout)
        assert hits[0]["path"] == str(sound) and hits[0]["score"] > 0.99
        # that query made the audio tower's one-off form (fp32 or int8 audio); the next one-off answers the same
        again = json.loads(mmr_run(home, "search", "--audio", str(sound), "--type", "audio", "--index", str(idx),
                                   "--json").stdout)
        scores = {h["id"]: h["score"] for h in hits}  # equal windows tie exactly: their order may differ
        assert again[0]["id"] == hits[0]["id"] and sum(h["id"] in scores for h in again) >= len(hits) - 2
        assert np.allclose([h["score"] for h in again], [h["score"] for h in hits], atol=1e-4)
        assert all(abs(scores[h["id"]] - h["score"]) < 1e-4 for h in again if h["id"] in scores)
    else:
        assert p.returncode == 2 and "no audio tower" in p.stderr

    # A second run embeds nothing.
    again = json.loads(mmr_run(home, "index", str(mixed), "--index", str(idx), "--json").stdout)
    assert again["items_added"] == 0 and again["files_unchanged"] == rep["files_new"] + len(skipped)

    # One step of fine-tuning from the space, as the README's example does from ViT-B-32:openai.
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"image": str(mixed / "photos" / f), "caption": c}) + "\n" for f, c in
                             [("red-square.png", "a red square"), ("blue-circle.png", "a blue circle")]))
    out = tmp_path / "tuned"
    mmr_run(home, "train", "clip", "--pairs", str(pairs), "--init", name, "--out", str(out), "--epochs", "1",
            "--batch-size", "2", "--no-progress")
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and np.isfinite(log[0]["loss"])
    assert json.loads((out / "space.json").read_text())["clip"] == {"config": "open_clip_config.json"}
    shutil.rmtree(out)  # ViT-B-32 checkpoints with optimizer state are ~2 GB


def test_spaces_says_what_is_missing_and_fetch_offline_says_where_to_put_it(home):
    """Before any weights are placed for it, a space is listed as missing, with the file and the place."""
    env_home = UserHome(root=home.root.parent / "empty-home", store=home.store)
    env_home.root.mkdir(exist_ok=True)
    out = mmr_run(env_home, "spaces", "-v").stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("vit-b-32-openai+wav2clip"))
    assert "missing: text+image, audio" in line
    assert str(env_home.mmr_cache / "wav2clip" / "Wav2CLIP.pt") in out
    assert str(env_home.mmr_cache / "open_clip" / "ViT-B-32" / "openai" / "open_clip_model.safetensors") in out
    assert "ready" in next(ln for ln in out.splitlines() if ln.startswith("tiny "))
    env = env_home.env() | {"MMR_OFFLINE": "1"}
    p = subprocess.run(MMR + ["fetch", "vit-b-32-openai+wav2clip"], env=env, capture_output=True, text=True)
    assert p.returncode == 1
    assert "huggingface.co/timm/vit_base_patch32_clip_224.openai" in p.stderr
    assert f"put it at {env_home.mmr_cache / 'wav2clip' / 'Wav2CLIP.pt'}" in p.stderr


@pytest.mark.parametrize("name", [n for n in SPACES if mmr.resolve_model_arg(n).clip.local_dir is None])
def test_fp32_towers_match_open_clip_to_float_rounding(name, home, monkeypatch):
    """In fp32 the towers agree with open_clip's reference to ~1e-6: close enough to tell a wrong activation
    (GELU for weights trained with QuickGELU moves vectors by ~1e-4, which the 0.999 bound above allows)."""
    import huggingface_hub.constants

    from mmretrieval.space.runtime import Space

    spec = mmr.resolve_model_arg(name)
    place_space_weights(spec, home)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(home.hub_cache))
    monkeypatch.setenv("MMR_CACHE", str(home.mmr_cache))
    space = Space(spec, precision="fp32")
    model, pre, tok = reference_clip(spec, home)
    texts = ["a red square", "a dog running on a wide sandy beach at sunset", "x"]
    img = shape_image("green", "star", size=256)
    with torch.no_grad():
        ref_t = torch.nn.functional.normalize(model.encode_text(tok(texts)), dim=-1).numpy()
        ref_i = torch.nn.functional.normalize(model.encode_image(pre(img)[None]), dim=-1).numpy()
    assert np.abs(space.text.encode(texts) - ref_t).max() < 1e-5
    assert np.abs(space.image.encode([img]) - ref_i).max() < 1e-5
