"""What the CPU says it can do (Linux's /proc/cpuinfo), for choices made by detection, never assumed."""
from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str] | None:
    """The instruction-set flags of the first CPU listed; None where they cannot be read (not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None
