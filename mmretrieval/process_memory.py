"""This process's resident memory and its peak, as the kernel counts them (Linux `/proc`; elsewhere the
lifetime peak from `getrusage`, and no reset)."""
from __future__ import annotations

import resource
import sys


def _status(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def current_bytes() -> int:
    """Resident memory now."""
    return _status("VmRSS") or peak_bytes()


def peak_bytes() -> int:
    """Resident memory at its highest since the process started or `reset_peak`."""
    hwm = _status("VmHWM")
    if hwm is not None:
        return hwm
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb if sys.platform == "darwin" else kb * 1024  # bytes on macOS, kilobytes elsewhere


def reset_peak() -> bool:
    """Start counting the peak again from now (Linux 4.0+); False where it cannot be reset."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
