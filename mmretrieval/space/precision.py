"""Which number format each tower computes in: chosen by what the CPU does (natively, and measured), overridable.

bf16 halves the bytes each weight costs and runs on native bf16 dot-product units (AVX512-BF16,
AMX); where those exist the image tower runs ~2.5x faster with vectors within cosine 0.9999 of fp32.
Without them bf16 is emulated and slower, so the choice is made by detection, never assumed.

The text tower stays fp32 under ``auto``: its fast path is held to a max abs difference of 1e-3
from open_clip's reference, which bf16 rounding exceeds (~2e-3). Ask for ``text=bf16`` (or ``bf16``)
to trade that for ~2x faster text queries.

``int8`` runs a tower under ONNX Runtime with quantised weights (`encoders.onnx_runtime`: dynamic for the
text and image towers, static for audio networks), further from fp32 (cosine ~0.9996 on the shipped space's
held-out images; on x86 without VNNI its weights are 7-bit, `encoders.onnx_int8.saturating_cpu`). ``auto`` picks it for the image tower where a short calibration
(`space.backend.int8_faster`, once per CPU, remembered) measured it faster than torch's bf16/fp32 by 10 %:
on this project's 2-core Zen 4 (AVX512-BF16, VNNI, no AMX) the ViT-B-32 image tower ran 39 img/s in int8
(item by item, as int8 runs) against ~37-43 in bf16 (batched). ``int8`` alone means the text and image
towers in int8.

Audio int8 is asked for by name only (``audio=int8``). It is static (see `encoders.onnx_runtime`) and fast
(Wav2CLIP's tower: 137 windows/s against 61 in bf16 here), but how far it moves a clip depends on the clip:
an export is refused below cosine 0.999 on held-out synthetic signals (the shipped tiny tower: 0.996 there,
0.985 on its held-out clips), and one that passed (ViT-B-32-sized placeholder Wav2CLIP weights) still gave
0.997 on a test clip. ``auto`` therefore keeps audio in bf16/fp32.

``fp16`` is the GPU's format: ``auto`` on a CUDA device runs the image and audio towers in fp16 (what
clip-retrieval does there; cosine >= 0.999 to fp32, `tests/test_cuda.py`) and keeps text in fp32, so an
index built on a GPU answers text queries on a CPU exactly as one built there. On a CPU (an fp16 index
queried or updated without a GPU) an fp16 tower keeps fp16-rounded weights and computes in fp32
(`space.towers.fp16_on_cpu`): CPUs without AVX512-FP16 compute fp16 itself ~10x slower than bf16.

Reduced precision moves vectors slightly, so a tower's precision is part of the space fingerprint
(fp32, the reference, is left out so that fp32 fingerprints stay what they always were).
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from ..cpu import cpu_flags
from ..errors import UsageError

TOWERS = ("text", "image", "audio")
FORMATS = ("fp32", "bf16", "fp16", "int8")
# int8 is ONNX Runtime's (see encoders.onnx_runtime): open_clip towers, and audio towers that split their
# front end from their network (`encoders.audio_tower.splits`) where asked for by name (``audio=int8``).
INT8_ALONE = ("text", "image")  # what a bare ``int8`` means
ENV = "MMR_PRECISION"


def dtype_of(fmt: str, default: str | None = None) -> Any:
    """The torch dtype of a format (imported here: reading an index's precision needs no torch)."""
    import torch

    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    return dtypes[fmt] if default is None else dtypes.get(fmt, dtypes[default])


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 dot products in hardware (AVX512-BF16 or AMX)."""
    import torch

    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(cpu, probe, None)
        if fn is not None:
            try:
                if fn():
                    return True
            except Exception:  # a probe that cannot run says nothing
                pass
    return bool((cpu_flags() or set()) & {"avx512_bf16", "amx_bf16"})


def auto_precision(device: str = "cpu", native_bf16: bool | None = None,
                   int8_faster: bool | None = None) -> dict[str, str]:
    """What ``auto`` means on this machine (see the module doc for why text stays fp32 and audio is not
    int8): on a GPU, image and audio in fp16; on a CPU, the image tower in int8 where ONNX Runtime's int8
    measured faster than torch here, else bf16 where native; audio bf16 where native."""
    kind = str(device).split(":", 1)[0]
    if kind == "cuda":
        return {"text": "fp32", "image": "fp16", "audio": "fp16"}
    if kind != "cpu":  # a name that is not a device must not pass for a GPU
        raise UsageError(f"unknown device {device!r} for precision auto; valid: cpu, cuda, cuda:N")
    native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
    if int8_faster is None:
        from .backend import int8_faster as measured

        int8_faster = measured(native)
    reduced = "bf16" if native else "fp32"
    return {"text": "fp32", "image": "int8" if int8_faster else reduced, "audio": reduced}


def parse_precision(value: str | dict[str, str] | None, device: str = "cpu",
                    native_bf16: bool | None = None, int8_faster: bool | None = None) -> dict[str, str]:
    """Resolve a precision request to one format per tower.

    Accepts ``auto`` (or None/empty: the ``MMR_PRECISION`` environment variable, else auto), ``fp32``,
    ``bf16``, ``fp16`` (every tower), ``int8`` (the text and image towers; audio fp32), or a comma
    list of ``tower=format`` laid over auto, e.g. ``text=bf16``.
    """
    chosen = named_precisions(value)
    if len(chosen) == len(TOWERS):  # the whole space named: nothing of auto's needed (nor measured)
        return chosen
    if "image" in chosen and int8_faster is None:
        int8_faster = False  # only the image tower's auto depends on it: no calibration when it is given
    return {**auto_precision(device, native_bf16, int8_faster), **chosen}


def named_precisions(value: str | dict[str, str] | None) -> dict[str, str]:
    """The formats a precision request names, per tower (what it leaves to ``auto`` is not in it); refuses a
    malformed request, naming what is valid."""
    if value is None or (isinstance(value, str) and not value.strip()):
        value = os.environ.get(ENV, "auto") or "auto"
    v = value.strip().lower() if isinstance(value, str) else ""
    if v in FORMATS:  # the whole space in one format
        return {t: v if (v != "int8" or t in INT8_ALONE) else "fp32" for t in TOWERS}
    if isinstance(value, dict):
        items = list(value.items())
    elif v == "auto":
        items = []
    else:
        items = []
        for part in v.split(","):
            if "=" not in part:
                raise UsageError(f"bad precision {value!r}: use auto, {', '.join(FORMATS)} or tower=format pairs "
                                 f"like 'image=bf16,text=fp32' (towers: {', '.join(TOWERS)})")
            k, f = (s.strip() for s in part.split("=", 1))
            items.append((k, f))
    chosen: dict[str, str] = {}
    for k, f in items:
        if k not in TOWERS:
            raise UsageError(f"bad precision: unknown tower {k!r}; valid: {', '.join(TOWERS)}")
        if f == "auto":
            continue
        if f not in FORMATS:
            raise UsageError(f"bad precision for {k}: {f!r}; valid: auto, {', '.join(FORMATS)}")
        chosen[k] = f
    return chosen


def describe(precision: dict[str, str]) -> str:
    """``fp32``, ``bf16`` or ``text=fp32,image=bf16,audio=bf16``: the form `parse_precision` reads back."""
    values = {precision.get(t, "fp32") for t in TOWERS}
    if len(values) == 1:
        return values.pop()
    return ",".join(f"{t}={precision.get(t, 'fp32')}" for t in TOWERS)


def reduced(precision: dict[str, str]) -> dict[str, str]:
    """The towers not in fp32: what the fingerprint records."""
    return {t: p for t, p in sorted(precision.items()) if p != "fp32"}
