"""ONNX Runtime inference for the networks of any tower family that torch can export, in fp32 or int8.

A family describes a network as a `TowerExport` (its export hook, `space.towers.TowerFamily.onnx_tower`); this
module exports, quantises, verifies and caches it. Built in: open_clip's text and image towers (`clip_export`,
dynamic int8) and audio towers' networks (`audio_export`, static int8).

A tower is exported once from the very module the space loaded (its real weights), verified against
that module on probe inputs, and cached by the fingerprint of its network and weights under the project's
cache (``MMR_CACHE``/onnx), so a later load reads the file. int8 is ONNX Runtime's dynamic quantisation of
the fp32 export (weights int8 per tensor, activations quantised per item; convolutions stay fp32, see
`onnx_int8`): on this project's 2-core
Zen 4 it ran the ViT-B-32 image tower ~1.5x faster than bf16 torch and a short text query ~3x faster
than fp32, at a cosine of ~0.999 to fp32, so it is a precision of its own (it moves vectors: it is
part of the fingerprint) while the fp32 export is a backend (same vectors to 2e-7: it is not).

Audio towers are convolution nets, where dynamic quantisation is slow (ONNX Runtime's ConvInteger: the
Wav2CLIP tower ran 11 windows/s against 46 in fp32). Their int8 is static instead: weights per output
channel, activations at scales fixed by a calibration on synthetic signals (`encoders.audio.calibration_waves`),
so a clip's vector does not depend on its batch mates and batches run whole (Wav2CLIP's tower on 2 Zen 4
cores, `scripts/bench/index_audio.py`: 137 windows/s against 61 in torch bf16 and 29 in fp32, cosine 0.9996
to fp32). Only the network is exported (the tower's `embed`); the signal front end (`features`: STFT, mel,
log) stays in torch, or runs in numpy for a one-off query (`audio_front`, with the fp32 or int8 export). Running an
export needs neither torch nor the model: `ort_tower`.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from ..errors import SpaceError, UnsupportedPrecisionError
from ..index.segments import atomic_write
from .arrays import PER_CORE_MIN_TOKENS
from .ort_tower import ExportFiles, OrtTower, checksum, read_export, weights_file
from .onnx_int8 import export_tag, quantize_dynamic, quantize_static, saturating_cpu
from . import torch_gate

FORMAT_VERSION = 4  # of what we export (its graph, its checks, the int8 recipe): part of the cache folder's name
OPSET = 17
# What an export must reproduce before it is used: fp32 to float rounding; int8 to the bar.
FP32_MAX_DIFF = 1e-4     # max abs difference of normalised vectors
INT8_MIN_COSINE = 0.995  # per probe, random inputs (real ones are checked by tests on the shipped space)


@lru_cache(maxsize=1)
def available() -> bool:
    """True where onnxruntime and onnx (the exporter's and quantiser's dependency) import."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_files(modality: str, precision: str, key: str, cache: Path) -> ExportFiles:
    """Where the tower of `key` (a fingerprint of its network and weights) is exported in `precision`."""
    return ExportFiles.in_folder(cache / "onnx" / key / f"v{FORMAT_VERSION}-{versions()}{export_tag()}", modality,
                                 precision)


def cached_tower(modality: str, precision: str, key: str, cache: Path, threads: int | None = None) -> OrtTower | None:
    """The tower `load_tower` exported before (a space whose towers all run from here never builds its torch
    modules), or None (see `ort_tower.read_export`; reading needs ONNX Runtime only)."""
    return read_export(export_files(modality, precision, key, cache), modality, threads)


def versions() -> str:
    import onnx
    import onnxruntime

    return f"ort{onnxruntime.__version__}-onnx{onnx.__version__}-torch{torch.__version__}"


@dataclass
class TowerExport:
    """One network as the exporter takes it: what a tower family's export hook returns (`TowerFamily.onnx_tower`),
    asked for only where no export of it is cached. The network maps one input array (batch first) to vectors."""

    traced: Callable[[], nn.Module]  # a float32 module to trace (a copy: called once, let go before quantising)
    reference: Callable[[torch.Tensor], torch.Tensor]  # the vectors the export must reproduce
    input_name: str
    axes: dict[int, str]  # the input's symbolic axes beside the batch (0): a text's tokens, an audio's frames
    probes: list[torch.Tensor]  # inputs it is checked on (two shapes where an axis is symbolic); the first is traced
    # static int8: activation scales fixed on these input batches (a vector does not depend on its batch mates);
    # None: dynamic int8, activations quantised per item
    calibration: list[np.ndarray] | None = None
    int8_min_cosine: float = INT8_MIN_COSINE
    batch_probe: torch.Tensor | None = None  # items of one shape for the batch-mates check (default: probes[0])


def _export(export: TowerExport, path: Path) -> None:
    wrapped = export.traced()
    axes = {export.input_name: {0: "batch", **export.axes}, "vectors": {0: "batch"}}

    def write(tmp: str) -> None:
        import warnings

        with warnings.catch_warnings(), torch_gate.export():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapped, (export.probes[0],), tmp, dynamo=False, input_names=[export.input_name],
                              output_names=["vectors"], dynamic_axes=axes, opset_version=OPSET)
        import onnx

        graph = onnx.load(tmp)
        data = weights_file(path)
        data.unlink(missing_ok=True)  # onnx writes into an existing file at its offsets
        # the weights file first: the graph naming it is renamed into place after, the record last
        onnx.save_model(graph, tmp, save_as_external_data=True, all_tensors_to_one_file=True, location=data.name,
                        size_threshold=1024)

    atomic_write(path, write)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def verify(tower: OrtTower, export: TowerExport, modality: str, precision: str) -> dict[str, float]:
    """Compare the exported tower with the torch module it came from (fp32) on the export's probes, of two shapes
    where an axis is symbolic: the export must not have fixed one. int8 that does not keep its vectors close
    raises `UnsupportedPrecisionError` (auto then picks another)."""
    check = measure(tower, export)
    worst_diff, worst_cos = check["max_abs_diff"], check["min_cosine"]
    if precision == "int8" and worst_cos < export.int8_min_cosine:
        raise UnsupportedPrecisionError(
            f"int8 does not keep the {modality} tower's vectors close to fp32 (min cosine {worst_cos:.5f} on "
            f"held-out probes); use fp32 or bf16 for {modality}")
    if precision == "fp32" and worst_diff > FP32_MAX_DIFF:
        raise SpaceError(f"the ONNX Runtime {modality} tower ({precision}) does not reproduce the torch one "
                         f"(max diff {worst_diff:.2e}, min cosine {worst_cos:.5f}); use --backend torch")
    return check


def measure(tower: OrtTower, export: TowerExport) -> dict[str, float]:
    """How far the exported tower's vectors are from the torch module's on the export's probes (`verify`)."""
    worst_diff, worst_cos = 0.0, 1.0
    for p in export.probes:
        with torch_gate.forward():
            ref = export.reference(p).float().numpy()
        a, b = _unit(ref), _unit(tower(p.numpy()))
        worst_diff = max(worst_diff, float(np.abs(a - b).max()))
        worst_cos = min(worst_cos, float((a * b).sum(1).min()))
    return {"max_abs_diff": worst_diff, "min_cosine": worst_cos}


def batch_independent(tower: OrtTower, export: TowerExport) -> bool:
    """Does a batch of inputs of one shape (the batched graph) give each item the vector it gets alone (the
    plain graph), to float rounding? What a per-item int8 graph promises (`onnx_int8.scales_per_item`),
    checked on the exported files: a graph whose batch is not its first axis fails, and runs item by item."""
    probe = (export.batch_probe if export.batch_probe is not None else export.probes[0]).numpy()
    together = _unit(tower(probe))
    alone = _unit(np.concatenate([tower(probe[i:i + 1]) for i in range(len(probe))]))
    return float(np.abs(together - alone).max()) <= 1e-6


def load_tower(make: Callable[[], TowerExport], modality: str, precision: str, key: str, cache: Path,
               threads: int | None = None) -> OrtTower:
    """The `modality` network under ONNX Runtime in `precision` (fp32 or int8), exported from `make()` (called
    only here, where no export is cached), verified and cached under `cache/key` (`key`: a fingerprint of the
    network and its weights; `cached_tower` reads it back). An int8 export that fails its check is remembered as
    refused: later loads raise `UnsupportedPrecisionError`."""
    if precision not in ("fp32", "int8"):
        raise SpaceError(f"no ONNX Runtime {modality} tower in {precision}")
    cached = cached_tower(modality, precision, key, cache, threads)
    if cached is not None:
        return cached
    folder = export_files(modality, precision, key, cache)[0]
    folder.mkdir(parents=True, exist_ok=True)
    # Processes starting together (Ray actors, server workers) would export the same tower at once, and
    # ONNX Runtime's quantiser writes and deletes a fixed-name file beside the fp32 graph: one at a time.
    with _exclusive(folder):
        cached = cached_tower(modality, precision, key, cache, threads)
        if cached is not None:
            return cached
        return _export_tower(make(), modality, precision, key, cache, threads)


@contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    fd = os.open(folder, os.O_RDONLY)  # the folder itself is the lock: no file left in the cache
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _export_tower(export: TowerExport, modality: str, precision: str, key: str, cache: Path,
                  threads: int | None) -> OrtTower:
    folder, path, meta, batched, fp32 = export_files(modality, precision, key, cache)
    t = time.perf_counter()
    if not fp32.exists():
        _export(export, fp32)  # the traced copy is let go on return, before quantising: the two were a peak
    static = export.calibration is not None

    def quantize(reduce_range: bool) -> bool:
        if static:
            quantize_static(fp32, path, list(export.calibration or []), export.input_name, reduce_range)
            return False  # static int8 does not depend on batch mates
        return quantize_dynamic(fp32, path, batched, reduce_range)

    scaled, reduce_range = False, False  # fp32 does not depend on batch mates
    if precision == "int8":
        # where int8 saturates, 7-bit weights or 8: whichever keeps the probes closer to fp32 (`onnx_int8`)
        if saturating_cpu():
            closeness = {}
            for v in (False, True):
                scaled = quantize(v)
                trial = OrtTower(path, export.input_name, threads, per_item=not static)
                closeness[v] = measure(trial, export)["min_cosine"]
                del trial
            reduce_range = closeness[True] > closeness[False]
            if not reduce_range:  # the 7-bit one is on disk
                scaled = quantize(False)
        else:
            scaled = quantize(False)
    tower = OrtTower(path, export.input_name, threads, per_item=precision == "int8" and not static)
    try:
        check = verify(tower, export, modality, precision)
        if scaled:
            tower.batched = batched
            if batch_independent(tower, export):
                tower.per_item = False
            else:
                tower.batched = None
                batched.unlink()
    except UnsupportedPrecisionError as e:
        refusal = json.dumps({"version": FORMAT_VERSION, "refused": str(e)})
        atomic_write(meta, lambda tmp: Path(tmp).write_text(refusal))
        path.unlink(missing_ok=True)
        batched.unlink(missing_ok=True)
        raise
    data = weights_file(path)
    info = {"version": FORMAT_VERSION, "seconds": round(time.perf_counter() - t, 2), "bytes": path.stat().st_size,
            "input": export.input_name,
            "data_bytes": data.stat().st_size if data.exists() else None,
            "data_crc32": checksum(data) if data.exists() else None,
            "per_item": tower.per_item, "batched_bytes": batched.stat().st_size if tower.batched else None,
            "crc32": checksum(path), "batched_crc32": checksum(batched) if tower.batched else None,
            "reduce_range": reduce_range, **check}
    atomic_write(meta, lambda tmp: Path(tmp).write_text(json.dumps(info)))
    return tower


def timed(fn: Callable[[], Any], repeats: int = 3) -> float:
    """Best of `repeats` wall times of `fn()` after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def race(contenders: dict[str, Callable[[], Any]], rounds: int = 3, repeats: int = 5,
         budget_s: float = 1.0) -> dict[str, float]:
    """Best wall time of each contender over `rounds` rounds, each round timing every contender in turn
    (`timed`: a warm-up, then `repeats` calls), fewer rounds once `budget_s` is spent (never fewer than one).

    A single block per contender let one stall of this VM decide a choice that is remembered for good: a
    fresh cache once measured the int8 block at 11.2 ms against bf16's 9.2, where it takes ~5.6 against
    ~9.3 here. Rounds of blocks rather than alternating call by call: right after a torch call its OpenMP
    workers still spin, and an ONNX Runtime call then measured ~25 % slower than it runs in an index."""
    best = {name: float("inf") for name in contenders}
    start = time.perf_counter()
    for r in range(rounds):
        if r and time.perf_counter() - start > budget_s:
            break
        for name, fn in contenders.items():
            best[name] = min(best[name], timed(fn, repeats))
    return best


def cpu_signature() -> str:
    """What a remembered speed comparison depends on: the CPU model, its instruction sets (a virtual machine may
    name two CPUs alike, "AMD EPYC", with and without AVX-512) and the threads used."""
    import platform
    import zlib

    from ..cpu import cpu_flags, cpu_model

    name, flags = cpu_model(), cpu_flags()
    sets = f"{zlib.crc32(' '.join(sorted(flags)).encode()):08x}" if flags else "?"
    return f"{name or platform.processor() or platform.machine()}|{sets}|{os.cpu_count()}|{torch.get_num_threads()}"


def int8_speedup(torch_dtype: torch.dtype, rows: int = 400, width: int = 768) -> dict[str, float]:
    """Seconds of one transformer MLP block of ViT-B's width (rows = 8 images x 50 tokens) in torch (packed,
    `torch_dtype`, batched) and in ONNX Runtime int8 (as an index runs it: one image per core, see
    `OrtTower.per_core`), best of a few rounds (`race`): the calibration behind ``auto`` choosing int8 for
    images."""
    import tempfile

    from .packed import PackedLinear, packing_available

    g = torch.Generator().manual_seed(0)
    mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)).eval()
    x = torch.randn(max(1, rows // 50), 50, width, generator=g)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "mlp.onnx", Path(tmp) / "mlp.int8.onnx"
        import warnings

        with warnings.catch_warnings(), torch_gate.export():
            warnings.simplefilter("ignore")
            torch.onnx.export(mlp, (x,), str(src), dynamo=False, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "items"}, "y": {0: "items"}}, opset_version=OPSET)
        batched = Path(tmp) / "mlp.int8.batched.onnx"
        scaled = quantize_dynamic(src, dst, batched)
        int8 = OrtTower(dst, "x", per_item=not scaled, batched=batched if scaled else None)
        xs = x.numpy()
        ref = mlp.to(torch_dtype)
        if packing_available(torch_dtype):
            ref = nn.Sequential(PackedLinear.of(ref[0]), ref[1], PackedLinear.of(ref[2]))
        xt = x.reshape(-1, width).to(torch_dtype)

        def by_torch() -> None:
            with torch_gate.forward():
                ref(xt)

        if int8.per_core and xs.shape[1] >= PER_CORE_MIN_TOKENS:  # as an index runs it: one image per core
            def by_int8() -> None:
                int8.across_cores(list(xs))
        else:
            def by_int8() -> None:
                int8(xs)
        return race({"int8": by_int8, str(torch_dtype).removeprefix("torch."): by_torch})


