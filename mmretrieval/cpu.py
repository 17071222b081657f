"""What the CPU says it can do (Linux's /proc/cpuinfo), for choices made by detection, never assumed."""
from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=None)
def _first(field: str) -> str | None:
    """The value of `field` for the first CPU listed; None where it cannot be read (not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.split(":", 1)[0].strip() == field:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> frozenset[str] | None:
    """The instruction-set flags; None where they cannot be read."""
    flags = _first("flags")
    return None if flags is None else frozenset(flags.split())


def cpu_model() -> str:
    """The CPU's model name ("" where it cannot be read)."""
    return _first("model name") or ""
