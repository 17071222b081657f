"""Which OpenMP runtime loads first: torch and faiss each bundle one.

With faiss's loaded first, a process that alternates the two (encode a query, search, encode the next...) ran
the ViT-B-32 text tower at 18 ms per query instead of 11 ms on 2 cores: the runtimes' threads fight over the
cores. Loading torch first avoids it, so by default torch is imported before faiss. A command that never runs
a tower (`mmr info`, `check`, `remove`, `compact`, `export`) calls `without_towers()` before the index loads
and skips torch's import (over a second). So does a one-off search (`one_off()`), whose query tower runs under
ONNX Runtime where it can (`space.passport`): where the space must load after all, one query pays the fight.
"""
from __future__ import annotations

from typing import Any

TORCH_FIRST = True


def without_towers() -> None:
    """This process will not run a torch tower: load faiss without torch."""
    global TORCH_FIRST
    TORCH_FIRST = False


def one_off() -> None:
    """This process runs a tower for one query at most: torch is not worth importing first."""
    without_towers()


def load_faiss() -> Any:
    if TORCH_FIRST:
        import torch  # noqa: F401
    import faiss

    return faiss
