"""On a CUDA GPU (skipped where torch sees none; run on a GPU machine by scripts/gpu_check.sh): fp16 towers
close to fp32, an index built there used on the CPU, an int8 index updated there, and the pinned copy."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mmretrieval as mmr
from mmretrieval.encoders.base import to_device
from mmretrieval.ingest.embed import Embedder
from mmretrieval.space.device import cuda_devices
from mmretrieval.space.runtime import Space
from test_precision import heldout, reduced_matches_fp32  # noqa: F401 (a fixture, and the check it feeds)

pytestmark = pytest.mark.skipif(not cuda_devices(), reason="needs a CUDA GPU")

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo"


def test_fp16_on_the_gpu_matches_fp32_on_shipped_heldout(heldout):  # noqa: F811
    """What auto picks on a GPU (image and audio fp16, text fp32) against fp32 on the CPU."""
    reduced_matches_fp32(heldout, "fp16", "cuda")


def test_the_gpus_fp16_and_a_cpus_agree():
    """An fp16 index is updated and queried on a CPU by rounded weights in fp32 (`towers.fp16_on_cpu`)."""
    spec = mmr.resolve_model_arg("tiny")
    gpu, cpu = (Space(spec, precision="image=fp16,audio=fp16", device=d) for d in ("cuda", "cpu"))
    assert gpu.fingerprint == cpu.fingerprint
    assert next(gpu.model.visual.parameters()).dtype == torch.float16
    assert next(gpu.model.visual.parameters()).device.type == "cuda"
    images = sorted(str(p) for p in (DEMO / "images").iterdir())
    sounds = sorted(str(p) for p in (DEMO / "sounds").iterdir())
    for a, b in ((gpu.image.encode(images), cpu.image.encode(images)),
                 (gpu.audio.encode(sounds), cpu.audio.encode(sounds))):
        cos = np.einsum("ij,ij->i", a, b)
        assert cos.min() >= 0.9999, (cos.min(), np.median(cos))


def test_pinned_copy_to_the_gpu():
    xs = [torch.rand(3, 8, 8) for _ in range(4)]
    out = to_device(xs, torch.device("cuda"), torch.float16)
    assert out.device.type == "cuda" and out.dtype == torch.float16
    torch.testing.assert_close(out.float().cpu(), torch.stack(xs), atol=1e-3, rtol=1e-3)


def _mmr(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmretrieval.cli", *args], capture_output=True, text=True, env=env)


def test_index_on_the_gpu_search_on_the_cpu(tmp_path):
    """The user's path on a GPU machine: `mmr index` takes the GPU by itself (auto), `mmr search` the CPU."""
    media = tmp_path / "demo"
    shutil.copytree(DEMO, media)
    env = {**os.environ, "MMR_INDEX": str(tmp_path / "idx")}
    env.pop("MMR_DEVICE", None)
    done = _mmr("index", str(media), "--model", "tiny", "--json", env=env)
    assert done.returncode == 0, done.stderr
    info = json.loads(_mmr("info", "--json", env=env).stdout)
    assert info["space"]["precision"] == "text=fp32,image=fp16,audio=fp16"
    hits = json.loads(_mmr("search", "a red circle", "-k", "3", "--type", "image", "--json", env=env).stdout)
    assert Path(hits[0]["path"]).name == "red-circle.png"
    hits = json.loads(_mmr("search", "--image", str(media / "images" / "blue-square.png"), "--type", "text",
                           "-k", "1", "--json", env=env).stdout)
    assert Path(hits[0]["path"]).name == "blue-square.txt"
    # the same index searched through the GPU: the same hits, scores within fp32 rounding
    on_gpu = mmr.Engine(tmp_path / "idx", readonly=True, device="cuda")
    on_cpu = mmr.Engine(tmp_path / "idx", readonly=True, device="cpu")
    for q in ("a red circle", "a high rising beep", "a green star"):
        a, b = on_gpu.search(q, k=5), on_cpu.search(q, k=5)
        for x, y in zip(a, b):
            assert abs(x.score - y.score) < 1e-3, (q, x.path, x.score, y.path, y.score)
            assert x.path == y.path or abs(x.score - {h.path: h.score for h in a}.get(y.path, -9)) < 1e-3  # a tie


def test_an_int8_index_updated_on_the_gpu_keeps_its_vectors(tmp_path):
    """int8 runs under ONNX Runtime on the CPU whatever the device: the vectors are the CPU's, bit for bit."""
    media = tmp_path / "images"
    shutil.copytree(DEMO / "images", media)
    cpu = mmr.Engine(tmp_path / "cpu", model="tiny", precision="text=fp32,image=int8,audio=fp32")
    cpu.index([media])
    gpu = mmr.Engine(tmp_path / "gpu", model="tiny", precision="text=fp32,image=int8,audio=fp32", device="cuda")
    gpu.index([media])
    assert gpu.space.backends["image"] == "onnx" and gpu.space.fingerprint == cpu.space.fingerprint
    paths = sorted(str(p) for p in media.iterdir())
    np.testing.assert_array_equal(_vectors(cpu, paths), _vectors(gpu, paths))


def _vectors(eng: mmr.Engine, paths: list[str]) -> np.ndarray:
    ids = {h.path: h.id for h in eng.search("x", k=len(paths), types=["image"])}
    return eng.store.vectors.reconstruct(np.array([ids[p] for p in paths]))


def test_every_core_decodes_for_the_gpu():
    space = Space(mmr.resolve_model_arg("tiny"), device="cuda")
    cores = len(os.sched_getaffinity(0))
    assert Embedder(space).workers == cores


def test_a_video_indexed_on_the_gpu_is_found_at_its_moments(tmp_path):
    """Videos through the GPU: scenes are merged after the image tower, wherever it runs, so a frame taken at t
    finds its video with a range holding t, as on the CPU (tests/test_video.py), and its sound is indexed too."""
    from video_files import Scene, Sound, VideoSpec, frame_at, write_video

    folder = tmp_path / "videos"
    folder.mkdir()
    video = write_video(folder / "show.mkv", VideoSpec([Scene(4, "red", "circle"), Scene(3, "blue", "square"),
                                                        Scene(5, "green", "triangle")],
                                                       sounds=[Sound(4.5, 2.0, 220.0)]))
    with mmr.Engine(tmp_path / "idx", model="tiny", device="cuda") as eng:
        rep = eng.index([folder])
        assert rep.skipped == [] and rep.added["image"] >= 3 and rep.added["audio"] >= 1, (rep.skipped, rep.added)
        for t in (1.0, 5.0, 9.0):
            q = tmp_path / f"frame-{t}.png"
            frame_at(video, t).save(q)
            hits = [h for h in eng.search(image=str(q), types=["image"], k=3) if h.path == str(video)]
            assert hits and hits[0].start <= t < hits[0].end, (t, [h.where for h in hits])
