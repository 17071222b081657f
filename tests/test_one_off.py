"""One-off commands (issue #37): a text or image search in a fresh process runs the space's query towers from
their ONNX exports through the space's passport, without importing torch or open_clip, and answers exactly as
the loaded space does; a passport whose files changed vouches for nothing."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mmretrieval as mmr
from mmretrieval.encoders import onnx_runtime
from mmretrieval.errors import SpaceMismatchError
from mmretrieval.space import passport
from tiny_space import make_tiny_space

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo"
HEAVY = ("torch", "torchvision", "open_clip")
pytestmark = pytest.mark.skipif(not onnx_runtime.available(), reason="onnxruntime is a dependency; missing here")
ODD = ["a red circle", "", "A Red  CIRCLE!!", "naïve café 東京 🐶 &amp;amp; <b>bold</b>", "x" * 400,
       "\u202eevil\u202c \x1b[31mred\x1b[0m", "12:30 lunch, 2 dogs & 1 cat"]


def mmr_cli(*argv: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`mmr ARGV` in a fresh process as a user runs it, and the heavy modules it imported (`-X importtime`)."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "mmretrieval.cli", *argv], capture_output=True,
                       text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    imported = {m.group(1) for m in re.finditer(r"^import time:.*\|\s+(\S+)$", r.stderr, re.M)}
    return r, sorted(m for m in HEAVY if m in imported)


def messages(r: subprocess.CompletedProcess) -> str:
    return "\n".join(line for line in r.stderr.splitlines() if not line.startswith("import time:"))


@pytest.fixture
def auto_backend(monkeypatch):
    """The user's default runtime (the suite runs towers under torch): towers are exported as a user's are."""
    monkeypatch.delenv("MMR_BACKEND", raising=False)


def test_one_off_searches_import_neither_torch_nor_open_clip_and_answer_as_the_loaded_space(tmp_path, auto_backend):
    idx = tmp_path / "idx"
    with mmr.Engine(idx, model="tiny") as eng:  # the shipped space, exported under auto as a user's index is
        eng.index([DEMO / "images", DEMO / "docs"])
        fingerprint, spec = eng.store.space_record()["fingerprint"], eng.spec
    assert passport.ready(fingerprint, spec, "text") and passport.ready(fingerprint, spec, "image")
    queries = [(["a red circle"], {"text": "a red circle"}),
               (["--image", str(DEMO / "images" / "blue-square.png"), "--type", "text"],
                {"image": str(DEMO / "images" / "blue-square.png"), "types": ["text"]})]
    for argv, kwargs in queries:
        r, heavy = mmr_cli("search", *argv, "-k", "5", "--json", "--index", str(idx))
        assert r.returncode == 0 and heavy == [], (argv, heavy, messages(r)[-2000:])
        assert messages(r) == ""  # nothing to say: no first load, no export
        one_off = json.loads(r.stdout)
        with mmr.Engine(idx, readonly=True, backend="torch") as eng:  # the loaded space, under torch
            loaded = eng.search(k=5, **kwargs)
            assert eng._space is not None
        assert [h["id"] for h in one_off] == [h.id for h in loaded], argv
        assert np.allclose([h["score"] for h in one_off], [h.score for h in loaded], atol=1e-5)
        assert [h["relevance"] for h in one_off] == pytest.approx([h.relevance for h in loaded], abs=1e-4)
    # the vectors themselves, for odd texts and every image of the demo, against the torch towers
    with mmr.Engine(idx, readonly=True) as eng:
        text, image = eng.query_encoder("text"), eng.query_encoder("image")
        assert type(text).__name__ == "ExportedTextEncoder" and type(image).__name__ == "ExportedImageEncoder"
        assert eng._space is None  # nothing loaded the space
        from mmretrieval.space.runtime import Space

        torch_space = Space(eng.spec, precision=eng.precision, backend="torch", jpeg_draft=eng.jpeg_draft)
        assert torch_space.fingerprint == fingerprint
        assert np.abs(text.encode(ODD) - torch_space.text.encode(ODD)).max() < 1e-5
        images = sorted(str(p) for p in (DEMO / "images").iterdir())
        cos = np.einsum("ij,ij->i", image.encode(images), torch_space.image.encode(images))
        assert cos.min() > 0.9999, cos.min()  # int8 where auto chose it: the same export, the same pixels


def test_first_query_after_a_torch_index_exports_and_says_so_once(tmp_path):
    """Indexed with --backend torch (no export): the first one-off text query loads the space, exports the text
    tower and says so; the next starts light."""
    idx = tmp_path / "idx"
    docs = tmp_path / "docs"
    shutil.copytree(DEMO / "docs", docs)
    with mmr.Engine(idx, model="tiny", backend="torch", precision="fp32") as eng:
        eng.index([docs])
    user = {"MMR_BACKEND": ""}  # the user's default (auto)
    first, heavy = mmr_cli("search", "a red circle", "--type", "text", "-k", "3", "--index", str(idx), env=user)
    assert first.returncode == 0 and "torch" in heavy
    assert "this text query loaded the space's models" in messages(first), messages(first)
    second, heavy = mmr_cli("search", "a red circle", "--type", "text", "-k", "3", "--index", str(idx), env=user)
    assert second.returncode == 0 and heavy == [] and messages(second) == "", (heavy, messages(second))
    assert second.stdout == first.stdout and "red-circle.txt" in second.stdout.splitlines()[0]
    # asked for torch, a user gets torch
    _, heavy = mmr_cli("--backend", "torch", "search", "a red circle", "--type", "text", "--index", str(idx), env=user)
    assert "torch" in heavy


def test_a_passport_vouches_for_nothing_once_a_file_behind_the_identity_changes(tmp_path, auto_backend):
    """Weights touched (same bytes): the space loads, is checked, and a new passport follows. Weights replaced
    by other weights: the one-off path does not answer with them; the loaded space refuses the index."""
    space = make_tiny_space(tmp_path / "space", name="one-off-tiny")
    docs = tmp_path / "docs"
    shutil.copytree(DEMO / "docs", docs)
    idx = tmp_path / "idx"
    with mmr.Engine(idx, model=str(space)) as eng:
        eng.index([docs])
        fingerprint, spec = eng.store.space_record()["fingerprint"], eng.spec
    assert passport.ready(fingerprint, spec, "text")
    weights = space / "open_clip_model.safetensors"
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert not passport.ready(fingerprint, spec, "text")
    with mmr.Engine(idx, readonly=True) as eng:
        assert type(eng.query_encoder("text")).__name__ == "TextEncoder"  # loaded and checked: same hash
        assert eng.search("a red circle", types=["text"], k=1)
    assert passport.ready(fingerprint, spec, "text")  # written again by that load
    other = make_tiny_space(tmp_path / "other", name="one-off-tiny", seed=1)
    shutil.copy(other / "open_clip_model.safetensors", weights)
    assert weights.stat().st_size == st.st_size  # same size, other bytes
    assert not passport.ready(fingerprint, spec, "text")
    with mmr.Engine(idx, readonly=True) as eng, pytest.raises(SpaceMismatchError):
        eng.search("a red circle", types=["text"], k=1)
    r, _ = mmr_cli("search", "a red circle", "--index", str(idx))
    assert r.returncode != 0 and "fingerprint" in messages(r).lower() and not r.stdout.strip(), messages(r)[-500:]
    # a passport that is not JSON, or names an export that is gone, is passed over, never an error
    path = passport.passport_path(fingerprint)
    path.write_text("{not json")
    assert passport.query_encoder(fingerprint, spec, "text") is None


def test_spaces_reads_open_clips_registry_from_its_snapshot_with_the_same_answers(tmp_path):
    """`mmr spaces` needs open_clip's registry (tags, where their weights come from): read from the snapshot the
    first import wrote, it imports neither torch nor open_clip and says what the live registry says."""
    import open_clip

    from mmretrieval.space import open_clip_catalog

    open_clip_catalog.catalog.cache_clear()
    live = open_clip_catalog.catalog()  # no snapshot in this test's cache yet: open_clip imported, snapshot written
    snapshot = open_clip_catalog._path(open_clip_catalog.open_clip_version())
    assert snapshot.is_file() and open_clip_catalog.open_clip_version() == open_clip.__version__
    open_clip_catalog.catalog.cache_clear()
    read = open_clip_catalog.catalog()
    assert read.models == tuple(open_clip.list_models()) == live.models
    for model, tag in open_clip.list_pretrained():
        assert read.tags(model) == open_clip.list_pretrained_tags_by_model(model)
        assert read.cfg(model, tag) == open_clip.get_pretrained_cfg(model, tag), (model, tag)
    assert read.cfg("ViT-B-32", "LAION2B-S34B-B79K") == open_clip.get_pretrained_cfg("ViT-B-32", "laion2b_s34b_b79k")
    r, heavy = mmr_cli("spaces", "-v", "--json")
    assert r.returncode == 0 and heavy == [], (heavy, messages(r)[-1000:])
    snapshot.unlink()
    again, heavy = mmr_cli("spaces", "-v", "--json")  # no snapshot: open_clip itself, the same answer
    assert "open_clip" in heavy and json.loads(again.stdout) == json.loads(r.stdout)
    # torch.hub's folder (where a Wav2CLIP download may already sit) by torch's own rule, without torch
    import torch

    from mmretrieval.space import weights

    for env in ({}, {"TORCH_HOME": str(tmp_path / "th")}, {"XDG_CACHE_HOME": str(tmp_path / "xdg")}):
        code = ("import sys; from mmretrieval.space.weights import _torch_hub_dir; print(_torch_hub_dir()); "
                "print('torch' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                             env={**{k: v for k, v in os.environ.items() if k not in ("TORCH_HOME", "XDG_CACHE_HOME")},
                                  "PYTHONPATH": str(ROOT), **env}).stdout.split()
        expect = subprocess.run([sys.executable, "-c", "import torch; print(torch.hub.get_dir())"], capture_output=True,
                                text=True, env={**{k: v for k, v in os.environ.items()
                                                   if k not in ("TORCH_HOME", "XDG_CACHE_HOME")}, **env}).stdout.strip()
        assert out == [expect, "False"], (env, out, expect)
    assert weights._torch_hub_dir() == Path(torch.hub.get_dir())  # torch loaded: its own answer


REAL = ROOT.parent / "shared" / "realworld"
SOUNDS = ["librosa-test-data/test1_22050.mp3", "librosa-test-data/test2_8000.wav", "mediafile/test/rsrc/full.m4a",
          "mediafile/test/rsrc/full.opus", "mediafile/test/rsrc/full.wma", "mediafile/test/rsrc/full.aiff",
          "pydub/test/data/test1-8bit.wav", "pydub/test/data/bach.ogg", "python-soundfile/tests/stereo.wav",
          "scipy/scipy/io/tests/data/test-48000Hz-2ch-64bit-float-le-wavex.wav",
          "scipy/scipy/io/tests/data/test-8000Hz-le-3ch-5S-24bit.wav", "pydub/test/data/test1_empty.wav",
          "mediafile/test/rsrc/unparseable.flac"]


def test_one_off_audio_query_exports_at_its_first_query_and_answers_as_the_loaded_space(tmp_path, auto_backend):
    """The audio tower's export serves only queries, so the first audio query that loads the space makes it (and
    says so); the next one-off audio query imports neither torch nor open_clip and gives the same hits. Its
    vectors (numpy front end, network under ONNX Runtime) equal the torch tower's on real files of many formats,
    rates and channel counts, on arrays with their rate, and on clips shorter than the tower accepts."""
    from mmretrieval.errors import DecodeError
    from mmretrieval.space.runtime import Space

    idx = tmp_path / "idx"
    with mmr.Engine(idx, model="tiny") as eng:
        eng.index([DEMO / "sounds", DEMO / "docs"])
        fingerprint, spec = eng.store.space_record()["fingerprint"], eng.spec
    if eng.precision["audio"] not in ("fp32", "int8"):
        pytest.skip(f"auto put audio in {eng.precision['audio']} here: no one-off audio tower (module doc of towers)")
    assert not passport.ready(fingerprint, spec, "audio")  # an index run makes no query-only export
    argv = ("search", "--audio", str(DEMO / "sounds" / "low-steady-buzz.flac"), "-k", "6", "--json", "--index", str(idx))
    first, heavy = mmr_cli(*argv)
    assert first.returncode == 0 and "torch" in heavy, messages(first)[-2000:]
    assert "this audio query loaded the space's models" in messages(first), messages(first)
    assert passport.ready(fingerprint, spec, "audio")
    second, heavy = mmr_cli(*argv)
    assert second.returncode == 0 and heavy == [] and messages(second) == "", (heavy, messages(second)[-2000:])
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert [h["id"] for h in a] == [h["id"] for h in b]
    assert a[0]["path"].endswith("sound-low-steady-square.txt")  # its caption, as in the demo
    assert np.allclose([h["score"] for h in a], [h["score"] for h in b], atol=1e-5)

    with mmr.Engine(idx, readonly=True) as eng:
        light = eng.query_encoder("audio")
        assert type(light).__name__ == "ExportedAudioEncoder" and eng._space is None
    loaded = Space(spec, precision=eng.precision, backend="torch").audio
    rng = np.random.default_rng(0)
    inputs: list = [str(p) for p in sorted((DEMO / "sounds").iterdir())]
    inputs += [(rng.standard_normal(44100 * 3).astype(np.float32) * 0.3, 44100),  # an array with its rate
               (rng.standard_normal((2, 4000)).astype(np.float32), 8000),          # stereo, 0.5 s
               rng.standard_normal(1600).astype(np.float32)]                       # 0.1 s: repeated to fit
    inputs += [str(REAL / p) for p in SOUNDS if (REAL / p).is_file()]
    compared = refused = 0
    for item in inputs:
        try:
            want = loaded.encode_clip(item)
        except DecodeError as e:
            with pytest.raises(DecodeError, match=re.escape(str(e)[:40])):
                light.encode_clip(item)
            refused += 1
            continue
        got = light.encode_clip(item)
        assert got.dtype == np.float32 and np.abs(got - want).max() < 1e-4, (item if isinstance(item, str) else "array")
        compared += 1
    assert compared >= 12 and (refused >= 2 or not REAL.is_dir())
    batch = [str(p) for p in sorted((DEMO / "sounds").iterdir())][:5]
    assert np.abs(light.encode(batch) - loaded.encode(batch)).max() < 1e-4


def test_collection_views_and_the_audit_import_neither_torch_nor_open_clip(tmp_path, auto_backend):
    """`mmr clusters` names clusters with the text tower's export (its labels' vectors then kept with the views);
    dupes, outliers, the map, the audit, info and check run no tower: none imports torch or open_clip."""
    idx = tmp_path / "idx"
    with mmr.Engine(idx, model="tiny") as eng:
        eng.index([DEMO])
        fingerprint, spec = eng.store.space_record()["fingerprint"], eng.spec
    assert passport.ready(fingerprint, spec, "text")
    for argv in (["clusters", "--json"], ["dupes", "--json"], ["outliers", "--json"], ["audit", "--json"],
                 ["info", "--json"], ["check"],
                 ["map", "--json", "--out", str(tmp_path / "map.png")]):
        r, heavy = mmr_cli(*argv, "--index", str(idx))
        assert r.returncode == 0 and heavy == [], (argv, heavy, messages(r)[-1500:])
        if "--json" in argv:
            assert json.loads(r.stdout), argv
    named = json.loads(mmr_cli("clusters", "--json", "--refit", "--index", str(idx))[0].stdout)["clusters"]
    # named by the text tower's export, which gives the torch tower's vectors (the first test)
    assert named and all(c["name"] for c in named) and any(c["name"] == "a square" for c in named)
