"""Which device computes the towers: the CPU, or a CUDA GPU where torch sees one.

``auto`` (the default; ``MMR_DEVICE`` sets another) puts bulk work (indexing, evaluation) on the GPU where
there is one and queries on the CPU: a one-off text query takes ~8 ms of CPU, less than starting CUDA
(~1-2 s). On a GPU the towers run in fp16 under ``auto`` precision (text stays fp32; see `space.precision`),
and the CPU cores all decode (`ingest.embed`). The device does not enter the fingerprint; the precision does.
"""
from __future__ import annotations

import os
import re

from ..errors import UsageError

ENV = "MMR_DEVICE"
CHOICES = "auto, cpu, cuda or cuda:N"


def cuda_devices() -> int:
    """How many CUDA devices torch sees here (0: none, or a torch built without CUDA)."""
    import torch

    try:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken driver install says the same as none: use the CPU
        return 0


def parse_device(value: str | None, *, bulk: bool = True) -> str:
    """``cpu`` or ``cuda[:N]`` for a request: auto, cpu, cuda or cuda:N (None/empty: ``MMR_DEVICE``, else
    auto). `bulk`: the work is indexing or evaluation (auto takes a GPU there), not a query."""
    if value is None or not str(value).strip():
        value = os.environ.get(ENV, "") or "auto"
    v = str(value).strip().lower()
    if v == "auto":
        return "cuda" if bulk and cuda_devices() else "cpu"
    if v == "cpu":
        return v
    m = re.fullmatch(r"cuda(?::(\d+))?", v)
    if m is None:
        raise UsageError(f"bad device {value!r}; valid: {CHOICES}")
    import torch

    n = cuda_devices()
    if n == 0:
        built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
        raise UsageError(f"device {v}: torch sees no CUDA GPU here (torch {torch.__version__}, {built}); "
                         f"use --device cpu")
    if m.group(1) is not None and int(m.group(1)) >= n:
        raise UsageError(f"device {v}: torch sees {n} CUDA GPU(s), numbered from 0")
    return v
