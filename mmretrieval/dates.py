"""Dates as files and queries write them, to seconds since the epoch (UTC)."""
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
