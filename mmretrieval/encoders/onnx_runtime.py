"""ONNX Runtime inference for open_clip's text and image towers (fp32 or dynamic int8) and for audio towers'
networks (static int8).

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

import copy
import fcntl
import json
import os
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from ..errors import SpaceError, UnsupportedPrecisionError
from ..index.segments import atomic_write
from .arrays import PER_CORE_MIN_TOKENS
from .ort_tower import INPUTS, ExportFiles, OrtTower, checksum, read_export, weights_file
from .onnx_int8 import export_tag, quantize_dynamic, quantize_static, saturating_cpu
from .packed import SelfAttention, self_attention_block
from . import torch_gate

FORMAT_VERSION = 4  # of what we export (its graph, its checks, the int8 recipe): part of the cache folder's name
OPSET = 17
# What an export must reproduce before it is used: fp32 to float rounding; int8 to the bar.
FP32_MAX_DIFF = 1e-4     # max abs difference of normalised vectors
INT8_MIN_COSINE = 0.995  # per probe, random inputs (real ones are checked by tests on the shipped space)
# Audio's static int8 is checked on held-out signals (not the calibration's) at the bar real data must meet: the
# shipped tiny audio tower measured 0.985 on its held-out clips and is refused; Wav2CLIP's ResNet 0.9998.
AUDIO_INT8_MIN_COSINE = 0.999


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


def exportable(model: nn.Module) -> bool:
    """Only models whose every block `SelfAttention` reproduces (open_clip's CLIP)."""
    import open_clip
    from open_clip.transformer import ResidualAttentionBlock

    blocks = [m for m in model.modules() if type(m) is ResidualAttentionBlock]
    return type(model) is open_clip.CLIP and bool(blocks) and all(self_attention_block(b) for b in blocks)


def _export_copy(model: nn.Module, modality: str) -> nn.Module:
    """A float copy of the `modality` tower whose attention keeps the sequence length symbolic (see
    `packed.SelfAttention`). The other tower is shared, not copied (the trace never reaches it): ViT-B-32's
    image tower is 350 MB, its text tower 250 MB, and a first run held the model and a whole copy at once."""
    own = [c for name, c in model.named_children() if (name == "visual") == (modality == "image")]
    memo = {id(c): c for c in model.children() if not any(c is o for o in own)}
    m = copy.deepcopy(model, memo).eval()
    for t in [*m.parameters(recurse=False), *m.buffers(recurse=False)]:
        if t.is_floating_point():
            t.data = t.data.float()
    for part in (c for c in m.children() if id(c) not in memo):
        part.float()
        for blk in part.modules():
            if self_attention_block(blk):
                blk.attn = SelfAttention(blk.attn, pack=False)
    return m


class _Tower(nn.Module):
    """What a tower computes from its input (tokens, pixels, audio features), as one module to export."""

    def __init__(self, model: nn.Module, modality: str) -> None:
        super().__init__()
        self.model = model
        self.modality = modality

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.modality == "text":  # tokens already trimmed: their length stays symbolic in the export
            from .text import encode_text_trimmed

            return encode_text_trimmed(self.model, x, n=x.shape[1])
        return self.model.encode_image(x) if self.modality == "image" else self.model.embed(x)


def _probe(modality: str, model: nn.Module, calibration: list[np.ndarray] | None = None) -> torch.Tensor:
    if modality == "audio":  # an audio tower's input depends on its front end: the calibration's features
        if not calibration:
            raise SpaceError("an audio tower is exported from calibration features; none were given")
        return torch.from_numpy(np.concatenate(calibration))
    g = torch.Generator().manual_seed(0)
    if modality == "text":
        vocab = int(model.token_embedding.num_embeddings)
        ctx = int(model.positional_embedding.shape[0])
        n = min(12, ctx)
        tok = torch.randint(1, vocab - 2, (3, n), generator=g)
        tok[:, 0] = vocab - 2                      # start of text
        tok[0, 5:] = 0                             # a shorter text in the batch: padded
        tok[0, 4], tok[1:, n - 1] = vocab - 1, vocab - 1  # end of text
        return tok
    size = model.visual.image_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return torch.randn(3, 3, h, w, generator=g)


def _export(model: nn.Module, modality: str, path: Path, probe: torch.Tensor) -> None:
    wrapped = _Tower(model, modality)
    axes = {INPUTS[modality]: {0: "batch", 1: "tokens"} if modality == "text" else
            {0: "batch", 3: "frames"} if modality == "audio" else {0: "batch"}, "vectors": {0: "batch"}}

    def write(tmp: str) -> None:
        import warnings

        with warnings.catch_warnings(), torch_gate.export():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapped, (probe,), tmp, dynamo=False, input_names=[INPUTS[modality]],
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


def verify(tower: OrtTower, model: nn.Module, modality: str, precision: str,
           held_out: list[np.ndarray] | None = None) -> dict[str, float]:
    """Compare the exported tower with the torch module it came from (unpacked, fp32) on probe inputs,
    texts of two lengths (and audio of two lengths) included: the export must not have fixed one. int8
    that does not keep its vectors close raises `UnsupportedPrecisionError` (auto then picks another)."""
    check = measure(tower, model, modality, held_out)
    worst_diff, worst_cos = check["max_abs_diff"], check["min_cosine"]
    if precision == "int8" and worst_cos < (AUDIO_INT8_MIN_COSINE if modality == "audio" else INT8_MIN_COSINE):
        raise UnsupportedPrecisionError(
            f"int8 does not keep the {modality} tower's vectors close to fp32 (min cosine {worst_cos:.5f} on "
            f"held-out probes); use fp32 or bf16 for {modality}")
    if precision == "fp32" and worst_diff > FP32_MAX_DIFF:
        raise SpaceError(f"the ONNX Runtime {modality} tower ({precision}) does not reproduce the torch one "
                         f"(max diff {worst_diff:.2e}, min cosine {worst_cos:.5f}); use --backend torch")
    return check


def measure(tower: OrtTower, model: nn.Module, modality: str,
            held_out: list[np.ndarray] | None = None) -> dict[str, float]:
    """How far the exported tower's vectors are from the torch module's on the probes (`verify`)."""
    probes = [_probe(modality, model, held_out)]
    if modality == "text":
        probes.append(probes[0][1:, :7].clone())
        probes[1][:, 6] = probes[0][1, -1]
    if modality == "audio":
        probes.append(probes[0][:, :, :, : max(1, probes[0].shape[3] * 3 // 4)].contiguous())
    worst_diff, worst_cos = 0.0, 1.0
    for p in probes:
        with torch_gate.forward():
            ref = _Tower(model, modality)(p).float().numpy()
        got = tower(p.numpy())
        a, b = _unit(ref), _unit(got)
        worst_diff = max(worst_diff, float(np.abs(a - b).max()))
        worst_cos = min(worst_cos, float((a * b).sum(1).min()))
    return {"max_abs_diff": worst_diff, "min_cosine": worst_cos}


def batch_independent(tower: OrtTower, model: nn.Module, modality: str) -> bool:
    """Does a batch of inputs of one shape (the batched graph) give each item the vector it gets alone (the
    plain graph), to float rounding? What a per-item int8 graph promises (`onnx_int8.scales_per_item`),
    checked on the exported files: a graph whose batch is not its first axis fails, and runs item by item."""
    probe = _probe(modality, model).numpy()
    if modality == "text":  # the probe's full-length texts (its first is shorter: padded)
        probe = probe[1:]
    together = _unit(tower(probe))
    alone = _unit(np.concatenate([tower(probe[i:i + 1]) for i in range(len(probe))]))
    return float(np.abs(together - alone).max()) <= 1e-6


def load_tower(model: nn.Module, modality: str, precision: str, key: str, cache: Path,
               threads: int | None = None,
               calibration: Callable[[int], list[np.ndarray]] | None = None) -> OrtTower:
    """The tower `modality` of `model` under ONNX Runtime in `precision` (fp32 or int8), exported and
    verified on first use and cached under `cache/key` (`key`: a fingerprint of the network and its
    weights; `cached_tower` reads it back). Audio: `model` is the audio tower (its network, `embed`), `calibration(seed)`
    batches of its `features` (seed 0: the export's scales; seed 1: held-out probes; called only when the
    tower is exported). An int8 export that fails its check is remembered as refused: later loads raise
    `UnsupportedPrecisionError`."""
    if modality not in INPUTS or precision not in ("fp32", "int8"):
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
        return _export_tower(model, modality, precision, key, cache, threads, calibration)


@contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    fd = os.open(folder, os.O_RDONLY)  # the folder itself is the lock: no file left in the cache
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _export_tower(model: nn.Module, modality: str, precision: str, key: str, cache: Path, threads: int | None,
                  calibration: Callable[[int], list[np.ndarray]] | None) -> OrtTower:
    folder, path, meta, batched, fp32 = export_files(modality, precision, key, cache)
    t = time.perf_counter()
    batches = calibration(0) if calibration is not None else None
    if not fp32.exists():
        copy_ = _export_copy(model, modality) if modality != "audio" else copy.deepcopy(model).float().eval()
        _export(copy_, modality, fp32, _probe(modality, model, batches))
        del copy_  # before quantising: the two together were a first run's peak
    held_out = calibration(1) if calibration is not None else None

    def quantize(reduce_range: bool) -> bool:
        if modality == "audio":
            quantize_static(fp32, path, list(batches or []), INPUTS[modality], reduce_range)
            return False  # static int8 does not depend on batch mates
        return quantize_dynamic(fp32, path, batched, reduce_range)

    scaled, reduce_range = False, False  # fp32 does not depend on batch mates
    if precision == "int8":
        # where int8 saturates, 7-bit weights or 8: whichever keeps the probes closer to fp32 (`onnx_int8`)
        if saturating_cpu():
            closeness = {}
            for v in (False, True):
                scaled = quantize(v)
                trial = OrtTower(path, INPUTS[modality], threads, per_item=modality != "audio")
                closeness[v] = measure(trial, model, modality, held_out)["min_cosine"]
                del trial
            reduce_range = closeness[True] > closeness[False]
            if not reduce_range:  # the 7-bit one is on disk
                scaled = quantize(False)
        else:
            scaled = quantize(False)
    tower = OrtTower(path, INPUTS[modality], threads, per_item=precision == "int8" and modality != "audio")
    try:
        check = verify(tower, model, modality, precision, held_out)
        if scaled:
            tower.batched = batched
            if batch_independent(tower, model, modality):
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


