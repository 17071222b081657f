"""Which runtime computes each tower: torch or ONNX Runtime, chosen by what measures faster here.

The backend does not move vectors beyond float rounding (an fp32 export matches torch to ~2e-7), so
it is not part of the fingerprint: an index built with one is searched with the other. It is a choice
for fp32 towers: the other precisions have one runtime each (bf16, fp16: torch; int8: ONNX Runtime). For fp32,
``auto`` times both on the tower's own workload (a one-text query for text, a batch for images) the
first time a tower is loaded on a CPU and remembers the winner under the cache
(``MMR_CACHE``/backends.json, by tower fingerprint and CPU), so later loads cost nothing.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from ..errors import UsageError
from ..index.segments import atomic_write

BACKENDS = ("auto", "torch", "onnx")
ENV = "MMR_BACKEND"


def parse_backend(value: str | None) -> str:
    """``auto`` (None/empty: the ``MMR_BACKEND`` environment variable, else auto), ``torch`` or ``onnx``."""
    if value is None or not str(value).strip():
        value = os.environ.get(ENV, "") or "auto"
    v = str(value).strip().lower()
    if v not in BACKENDS:
        raise UsageError(f"bad backend {value!r}; valid: {', '.join(BACKENDS)}")
    return v


def backend_for(requested: str, precision: str, onnx_available: bool) -> str | None:
    """torch or onnx where the rules decide; None where fp32 must be measured (auto with both present).
    The backend is a choice for fp32 towers only: bf16 and fp16 run under torch, int8 under ONNX Runtime."""
    if precision in ("int8", "bf16", "fp16"):
        return "onnx" if precision == "int8" else "torch"
    if requested != "auto":
        return requested
    return None if onnx_available else "torch"


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def remembered(path: Path, key: str) -> str | None:
    """The backend measured faster for `key` before, if any."""
    choice = _read(path).get(key, {}).get("choice")
    return choice if choice in ("torch", "onnx") else None


def remember(path: Path, key: str, seconds: dict[str, float]) -> str:
    """Record a measurement (backend -> seconds) for `key`; returns the faster backend."""
    choice = min(seconds, key=seconds.get)
    known = _read(path)
    known[key] = {"choice": choice, "seconds": {k: round(v, 5) for k, v in seconds.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(known, indent=1, sort_keys=True)))
    return choice


# int8 must beat torch's best other format by this much to be chosen: it moves vectors more (cosine ~0.9996).
INT8_MARGIN = 1.1
CALIBRATION = 2  # how `int8_speedup` measures: a new way is measured again rather than read from the old record


@lru_cache(maxsize=None)
def int8_faster(native_bf16: bool) -> bool:
    """Does ONNX Runtime's int8 beat torch (bf16 where native, else fp32) on this CPU? Measured once per CPU
    on a ViT-B-sized block (`encoders.onnx_runtime.int8_speedup`, ~1 s) and remembered beside the backends."""
    from ..encoders import onnx_runtime as ort
    from .cache import cache_root

    if not ort.available():
        return False
    path = cache_root() / "backends.json"
    # the int8 recipe's version (a batched int8, format 3, ran faster than the item-by-item one measured
    # before) and how it is measured (since calibration 2: in rounds, one image per core as an index runs it)
    key = (f"int8-vs-torch|v{ort.FORMAT_VERSION}|c{CALIBRATION}|{ort.cpu_signature()}|"
           f"{'bf16' if native_bf16 else 'fp32'}")
    choice = remembered(path, key)
    if choice is None:
        import torch

        seconds = ort.int8_speedup(torch.bfloat16 if native_bf16 else torch.float32)
        other = next(v for k, v in seconds.items() if k != "int8")
        # recorded as the backend that computes the faster format
        choice = remember(path, key, {"onnx": seconds["int8"] * INT8_MARGIN, "torch": other})
    return choice == "onnx"
