"""Which hits to keep: at or above a relevance, or up to where the scores drop (a gap detector)."""
from __future__ import annotations

import numpy as np

CUTOFFS = ("none", "gap")
GAP_MIN = 0.15        # a drop in relevance at least this large ...
GAP_FACTOR = 3.0      # ... and this many times the typical drop between neighbours counts as the gap
GAP_FLOOR = 0.5       # and hits below this relevance (more likely irrelevant than relevant) are never kept
RULE = 0.5            # listings mark where relevance falls below this: where the answers end


def check_min_relevance(value: float | None) -> float | None:
    from ..errors import UsageError

    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise UsageError(f"min_relevance must be a number from 0 to 1, got {value!r}")
    return float(value)


def check_cutoff(value: str | None) -> str:
    from ..errors import UsageError

    value = value or "none"
    if value not in CUTOFFS:
        raise UsageError(f"unknown cutoff {value!r}; valid: {', '.join(CUTOFFS)}")
    return value


def gap_cut(relevance: np.ndarray) -> int:
    """How many of the hits (best first by relevance) to keep: up to the largest drop, if one stands out, and
    none below `GAP_FLOOR` (a query with nothing relevant has no gap to find, only a flat tail)."""
    r = np.sort(np.asarray(relevance, np.float64))[::-1]
    n = int((r >= GAP_FLOOR).sum())
    if n < 2:
        return n
    drops = r[:n - 1] - r[1:n]
    i = int(np.argmax(drops))
    typical = float(np.median(drops)) if drops.size > 1 else 0.0
    if drops[i] >= GAP_MIN and drops[i] >= GAP_FACTOR * typical:
        return i + 1
    return n


def first_below_rule(relevance: list[float | None]) -> int | None:
    """Where a listing ordered by relevance draws its rule: the position of the first hit whose relevance is
    below `RULE` (None when every hit reaches it, or when a hit has no relevance: then hits are in cosine order)."""
    if any(r is None for r in relevance):
        return None
    return next((i for i, r in enumerate(relevance) if r < RULE), None)
