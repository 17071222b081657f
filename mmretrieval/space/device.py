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


def gpu(index: int) -> tuple[str, tuple[int, int]]:
    """A CUDA device's name and compute capability."""
    import torch

    return torch.cuda.get_device_name(index), torch.cuda.get_device_capability(index)


def build_archs() -> list[str]:
    """The GPU architectures this torch build carries kernels for (``sm_90``, ``compute_120``, ...)."""
    import torch

    try:
        return list(torch.cuda.get_arch_list())
    except Exception:
        return []


def runs_on(capability: tuple[int, int], archs: list[str]) -> bool:
    """Can a torch build with kernels for `archs` run on a GPU of `capability`? A binary kernel (``sm_XY``) runs
    on its major version from its minor up; PTX (``compute_XY``) is compiled for any later GPU. torch itself only
    warns on a GPU it has no kernels for (pip's CUDA 13 builds dropped Pascal and Volta), then fails at the
    first kernel: ``auto`` must not pick such a GPU."""
    if not archs:
        return True  # nothing to check against
    major, minor = capability
    for arch in archs:
        kind, _, digits = arch.partition("_")
        digits = digits.rstrip("af")
        if not digits.isdigit():
            continue
        code = (int(digits) // 10, int(digits) % 10)
        if (kind == "sm" and code[0] == major and code[1] <= minor) or (kind == "compute" and code <= (major, minor)):
            return True
    return False


def parse_device(value: str | None, *, bulk: bool = True) -> str:
    """``cpu`` or ``cuda[:N]`` for a request: auto, cpu, cuda or cuda:N (None/empty: ``MMR_DEVICE``, else
    auto). `bulk`: the work is indexing or evaluation (auto takes a GPU there), not a query."""
    if value is None or not str(value).strip():
        value = os.environ.get(ENV, "") or "auto"
    v = str(value).strip().lower()
    if v == "auto":
        if not bulk:
            return "cpu"
        archs = build_archs()
        usable = [i for i in range(cuda_devices()) if runs_on(gpu(i)[1], archs)]
        return "cpu" if not usable else "cuda" if usable[0] == 0 else f"cuda:{usable[0]}"
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
    index = int(m.group(1) or 0)
    if index >= n:
        raise UsageError(f"device {v}: torch sees {n} CUDA GPU(s), numbered from 0")
    name, cap = gpu(index)
    archs = build_archs()
    if not runs_on(cap, archs):
        raise UsageError(f"device {v} ({name}, compute capability {cap[0]}.{cap[1]}): torch {torch.__version__} "
                         f"carries no kernels for it (it has {', '.join(archs)}); install a torch build for this GPU "
                         f"or use --device cpu")
    return v
