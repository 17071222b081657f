"""Dates as files and queries write them, to seconds since the epoch (UTC); times within a recording as people read them."""
from __future__ import annotations

import re
from datetime import datetime, timezone

_DATE = re.compile(r"^\s*(\d{4})(?:[-:/](\d{1,2})(?:[-:/](\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?)?)?")


def parse_date(text: str) -> float | None:
    """'2021:07:04 15:30:00' (EXIF), '2021-07-04T15:30', '2021-07-04', '2021' -> epoch seconds (UTC)."""
    m = _DATE.match(str(text))
    if not m:
        return None
    y, mo, d, h, mi, s = (int(g) if g else None for g in m.groups())
    try:
        when = datetime(y, mo or 1, d or 1, h or 0, mi or 0, s or 0, tzinfo=timezone.utc)
    except ValueError:
        return None
    return when.timestamp() if 1800 <= y <= 2200 else None


def clock(seconds: float) -> str:
    """A time within a recording as people read it: '1:02.5', '1:02:03.0'."""
    m, s = divmod(max(0.0, float(seconds)), 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m}:{s:04.1f}"


def span(start: float, end: float) -> str:
    """'[0:12.0–0:18.5]'."""
    return f"[{clock(start)}–{clock(end)}]"
