"""Subtitles (.srt, .vtt): cues grouped into runs of speech, each a block with its time range, so a hit says
when it is said. The parser is lenient: a cue with a broken time line is skipped, not the file."""
from __future__ import annotations

import re
from typing import Iterator

from ..errors import DecodeError
from .base import DocumentFormat, Limits, Remark, Text, register_format
from .plain import decode_text_bytes

_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
_CUE_TIMES = re.compile(_TIME + r"\s*-->\s*" + _TIME)
_TAG = re.compile(r"<[^>]{0,200}>|\{\\[^}]{0,200}\}")  # <i>, <c.yellow>, <00:01.000>, {\an8}
# A group ends at a pause this long, or when it spans this long or has this many words (~one passage).
PAUSE_S = 4.0
GROUP_S = 30.0
GROUP_WORDS = 40


def _seconds(h: str | None, m: str, s: str, ms: str) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000


def cues(text: str) -> tuple[list[tuple[float, float, str]], int]:
    """(start s, end s, text) of each cue in order, and how many cue-like blocks had no readable time line."""
    out, broken = [], 0
    for block in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").replace("\r", "\n")):
        lines = [ln for ln in block.strip("\n").split("\n")]
        at = next((i for i, ln in enumerate(lines) if "-->" in ln), None)
        if at is None:
            continue  # a WEBVTT header, NOTE, STYLE, REGION, or a cue number alone
        m = _CUE_TIMES.search(lines[at])
        if m is None:
            broken += 1
            continue
        g = m.groups()
        start, end = _seconds(*g[:4]), _seconds(*g[4:])
        words = " ".join(_TAG.sub("", ln).strip() for ln in lines[at + 1:])
        words = " ".join(words.split())
        if words:
            out.append((start, max(start, end), words))
    return out, broken


def _read(data: bytes | None, path: str, limits: Limits) -> Iterator[Text | Remark]:
    if data is None:
        raise DecodeError("subtitle file over 64 MB")
    text, _ = decode_text_bytes(data)
    found, broken = cues(text)
    if not found:
        raise DecodeError("no subtitle cues (no 'start --> end' time lines with text)")
    if broken:
        yield Remark(f"{broken} cue(s) with an unreadable time line skipped")
    yield from groups(found)


def groups(found: list[tuple[float, float, str]], where: dict | None = None) -> Iterator[Text]:
    """Cues (start, end, text) in time order grouped into runs of speech, each a block with its time range
    (and `where`'s keys: a video's subtitle track)."""
    group: list[tuple[float, float, str]] = []
    for cue in found:
        if group and (cue[0] - group[-1][1] > PAUSE_S or cue[1] - group[0][0] > GROUP_S
                      or sum(len(c[2].split()) for c in group) >= GROUP_WORDS):
            yield _block(group, where)
            group = []
        group.append(cue)
    if group:
        yield _block(group, where)


def _block(group: list[tuple[float, float, str]], where: dict | None) -> Text:
    return Text("\n".join(c[2] for c in group),
                {**(where or {}), "t_start": round(group[0][0], 3), "t_end": round(max(c[1] for c in group), 3)})


SUBTITLES = register_format(DocumentFormat(name="subtitles", extensions=frozenset({".srt", ".vtt"}), read=_read))
