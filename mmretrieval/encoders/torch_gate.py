"""torch forwards and ONNX exports in one process, on several threads.

`torch.onnx.export` sets a process-wide flag while it traces, and a torch forward on another thread fails on it
("GLOBALS.in_onnx_export must be False"): a server's query while a migration's new space exports its towers, a
reader's search while a writer loads. Forwards share the gate; an export waits for them and holds it alone. A
thread that exports from inside its own forward does not wait for itself.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

_cond = threading.Condition()
_running = 0          # forwards under way, on every thread
_exporting = False
_mine = threading.local()  # forwards under way on this thread


@contextmanager
def forward() -> Iterator[None]:
    """Around a torch forward: `torch.inference_mode()`, never while another thread exports."""
    import torch

    global _running
    with _cond:
        while _exporting and not getattr(_mine, "exporting", False):
            _cond.wait()
        _running += 1
    _mine.n = getattr(_mine, "n", 0) + 1
    try:
        with torch.inference_mode():
            yield
    finally:
        _mine.n -= 1
        with _cond:
            _running -= 1
            _cond.notify_all()


@contextmanager
def export() -> Iterator[None]:
    """Around `torch.onnx.export`: alone, once the other threads' forwards are done."""
    global _exporting
    with _cond:
        while _exporting or _running - getattr(_mine, "n", 0) > 0:
            _cond.wait()
        _exporting = True
    _mine.exporting = True
    try:
        yield
    finally:
        _mine.exporting = False
        with _cond:
            _exporting = False
            _cond.notify_all()
