"""Meaning, not just structure: the small space trained here and shipped in assets/models/tiny."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import mmretrieval as mmr
from mmretrieval.space.runtime import Space
from mmretrieval.train.corpus import generate
from mmretrieval.train.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo"


@pytest.fixture(scope="module")
def tiny():
    return Space(mmr.resolve_model_arg("tiny"))


@pytest.fixture(scope="module")
def demo_engine(tmp_path_factory):
    eng = mmr.Engine(tmp_path_factory.mktemp("demo") / "idx", model="tiny")
    rep = eng.index([DEMO])
    assert not rep.skipped
    return eng


def test_tiny_is_registered_and_small():
    spec = mmr.resolve_model_arg("tiny")
    assert spec.audio is not None and spec.clip.local_dir is not None
    size = sum(f.stat().st_size for f in spec.clip.local_dir.iterdir())
    assert size <= 20 * 1024 * 1024


def test_heldout_quality(tiny, tmp_path):
    """The issue's targets on the held-out split (seed disjoint from training): P@5 by attributes."""
    generate(tmp_path, seed=2000, images_per_class=6, sounds_per_class=6)
    rep = evaluate(tiny, str(tmp_path / "pairs.jsonl"))
    assert rep["image"]["text_to_image"]["P@5"] >= 0.90
    assert rep["image"]["image_to_text"]["P@5"] >= 0.90
    assert rep["audio"]["text_to_audio"]["P@5"] >= 0.80
    assert rep["audio"]["audio_to_text"]["P@5"] >= 0.80
    # calibration: matched pairs score clearly above random ones
    for m in ("image", "audio"):
        cal = rep[m]["calibration"]
        assert cal["matched"]["p5"] > cal["random"]["p50"]


def test_demo_red_circle_first(demo_engine):
    hits = demo_engine.search("a red circle", k=3)
    assert Path(hits[0].path).name == "red-circle.png"


def test_demo_image_finds_its_caption(demo_engine):
    for name in ("blue-square", "green-star", "orange-triangle"):
        hits = demo_engine.search(image=DEMO / "images" / f"{name}.png", types=["text"], k=3)
        assert Path(hits[0].path).name == f"{name}.txt", (name, [h.path for h in hits])


def test_demo_high_rising_beep(demo_engine):
    hits = demo_engine.search("a high rising beep", types=["audio"], k=3)
    assert Path(hits[0].path).stem == "high-rising-beep"


def test_demo_audio_query_finds_its_description(demo_engine):
    hits = demo_engine.search(audio=DEMO / "sounds" / "low-steady-buzz.flac", types=["text"], k=3)
    assert Path(hits[0].path).name == "sound-low-steady-square.txt"


def test_tiny_loads_from_an_installed_wheel(tmp_path):
    """Build a wheel, install it into a bare target dir, and resolve `tiny` from there."""
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode != 0:
        pytest.skip("pip is not available in this environment")
    wheel_dir = tmp_path / "wheel"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(wheel_dir), str(ROOT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    target = tmp_path / "site"
    wheel = next(wheel_dir.glob("mmretrieval-*.whl"))
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    code = ("import json, mmretrieval as m; s = m.resolve_model_arg('tiny'); "
            "print(json.dumps({'file': m.__file__, 'dir': str(s.clip.local_dir)}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["file"].startswith(str(target)) and out["dir"].startswith(str(target))
