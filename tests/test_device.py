"""Where the towers compute: the device choice, fp16 as a CPU computes it, and how an index run feeds a GPU.

What needs a GPU is in tests/test_cuda.py (skipped without one); these run everywhere.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import mmretrieval as mmr
from mmretrieval.encoders.base import to_device
from mmretrieval.errors import UsageError
from mmretrieval.ingest.embed import Embedder
from mmretrieval.space import device as devices
from mmretrieval.space.device import parse_device
from mmretrieval.space.runtime import Space


def _gpus(monkeypatch, *capabilities, archs=("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120")):
    monkeypatch.setattr(devices, "cuda_devices", lambda: len(capabilities))
    monkeypatch.setattr(devices, "gpu", lambda i: (f"GPU {i}", capabilities[i]))
    monkeypatch.setattr(devices, "build_archs", lambda: list(archs))


def test_auto_takes_a_gpu_for_bulk_work_only(monkeypatch):
    monkeypatch.delenv("MMR_DEVICE", raising=False)
    _gpus(monkeypatch)
    assert parse_device(None) == parse_device("auto") == parse_device("auto", bulk=False) == "cpu"
    _gpus(monkeypatch, (9, 0), (9, 0))
    assert parse_device("auto") == "cuda"
    assert parse_device("auto", bulk=False) == "cpu"  # a query: CUDA's start costs more than the query
    assert parse_device(" CUDA:1 ") == "cuda:1"
    assert parse_device("cpu") == "cpu"
    monkeypatch.setenv("MMR_DEVICE", "cpu")
    assert parse_device(None) == "cpu"
    assert parse_device("cuda") == "cuda"  # an explicit choice wins over the environment


def test_a_gpu_that_is_not_there_is_a_clear_error(monkeypatch):
    _gpus(monkeypatch)
    with pytest.raises(UsageError, match="torch sees no CUDA GPU here .*use --device cpu"):
        parse_device("cuda")
    _gpus(monkeypatch, (8, 6))
    with pytest.raises(UsageError, match="sees 1 CUDA GPU"):
        parse_device("cuda:1")
    with pytest.raises(UsageError, match="valid: auto, cpu, cuda or cuda:N"):
        parse_device("gpu")


def test_a_gpu_this_torch_has_no_kernels_for(monkeypatch):
    """pip's CUDA 13 torch has no kernels for Pascal or Volta: torch only warns, then fails at the first kernel."""
    assert devices.runs_on((9, 0), ["sm_80", "sm_90a"]) and devices.runs_on((8, 9), ["sm_80"])
    assert not devices.runs_on((6, 1), ["sm_75", "sm_80", "sm_90"]) and not devices.runs_on((8, 0), ["sm_86"])
    assert devices.runs_on((12, 1), ["sm_90", "compute_120"]) and not devices.runs_on((9, 0), ["compute_100"])
    assert devices.runs_on((6, 1), [])  # a build that lists nothing: nothing to check
    _gpus(monkeypatch, (6, 1), (8, 9))
    assert parse_device("auto") == "cuda:1"  # the one it can run on
    with pytest.raises(UsageError, match=r"cuda \(GPU 0, compute capability 6.1\): torch .* carries no kernels"):
        parse_device("cuda")
    assert parse_device("cuda:1") == "cuda:1"
    _gpus(monkeypatch, (6, 1))
    assert parse_device("auto") == "cpu"


def test_cli_device_without_a_gpu(tmp_path, tiny_space_dir):
    if devices.cuda_devices():
        pytest.skip("this machine has a GPU")
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.txt").write_text("a red circle")
    env = {**os.environ, "MMR_INDEX": str(tmp_path / "idx")}
    run = [sys.executable, "-m", "mmretrieval.cli"]
    bad = subprocess.run([*run, "--device", "cuda", "index", str(media), "--model", str(tiny_space_dir)],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "torch sees no CUDA GPU" in bad.stderr
    assert not (tmp_path / "idx").exists()  # refused before anything was created
    ok = subprocess.run([*run, "--device", "auto", "index", str(media), "--model", str(tiny_space_dir)],
                        capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    hit = subprocess.run([*run, "--device", "cpu", "search", "a red circle", "--type", "text", "--json"],
                         capture_output=True, text=True, env=env)
    assert hit.returncode == 0 and "a.txt" in hit.stdout


def test_fp16_on_a_cpu_rounds_weights_and_computes_in_fp32(tiny_space):
    """An index built on a GPU in fp16, updated or queried here: the towers keep fp16-rounded weights in fp32
    (a CPU without AVX512-FP16 computes fp16 ~10x slower than bf16)."""
    half = Space(tiny_space.spec, precision="image=fp16,audio=fp16")
    visual = half.model.visual
    for p in visual.parameters():
        assert p.dtype == torch.float32
        np.testing.assert_array_equal(p.detach(), p.detach().half().float())  # exactly representable in fp16
    assert any(not torch.equal(a, b) for a, b in zip(visual.parameters(), tiny_space.model.visual.parameters()))
    for p in half.audio.tower.parameters():
        np.testing.assert_array_equal(p.detach(), p.detach().half().float())
    assert half.audio.dtype == torch.float32
    # text stays fp32: the same vectors as fp32's, the fingerprint names the fp16 towers only
    texts = ["a red circle", "a blue star"]
    np.testing.assert_array_equal(half.text.encode(texts), tiny_space.text.encode(texts))
    assert half.identity["precision"] == {"audio": "fp16", "image": "fp16"}
    assert half.fingerprint not in (tiny_space.fingerprint, Space(tiny_space.spec, precision="bf16").fingerprint)


def test_an_fp16_index_opens_and_grows_on_a_cpu(tiny_space_dir, tmp_path):
    """The index a GPU machine would build under auto (image and audio fp16), used where there is none."""
    media = tmp_path / "media"
    media.mkdir()
    from PIL import Image

    Image.new("RGB", (40, 40), (220, 20, 20)).save(media / "red.png")
    (media / "a.txt").write_text("a red square")
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir), precision="text=fp32,image=fp16,audio=fp16")
    assert eng.index([media]).items_added == 2
    eng.close()
    again = mmr.Engine(tmp_path / "idx")
    assert again.space.precision == {"text": "fp32", "image": "fp16", "audio": "fp16"}
    Image.new("RGB", (40, 40), (20, 20, 220)).save(media / "blue.png")
    assert again.index([media]).items_added == 1
    hits = again.search(image=str(media / "red.png"), k=1, types=["image"])
    assert hits[0].path.endswith("red.png") and hits[0].score > 0.999
    again.close()


def test_to_device_stacks_in_the_towers_format():
    xs = [torch.full((3, 2, 2), float(i)) for i in range(3)]
    out = to_device(xs, torch.device("cpu"), torch.bfloat16)
    assert out.dtype == torch.bfloat16 and out.shape == (3, 3, 2, 2) and out[2].float().eq(2).all()


def test_every_core_decodes_for_a_gpu(tiny_space, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(12)), raising=False)
    assert Embedder(tiny_space).workers == 4  # the CPU computes too: at most 4 decode threads
    monkeypatch.setattr(tiny_space, "device", torch.device("cuda"))  # how the Embedder sees a GPU space
    assert Embedder(tiny_space).workers == 12
    assert Embedder(tiny_space, workers=3).workers == 3
