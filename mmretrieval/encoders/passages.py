"""Documents cut into passages that fit a text tower's context, without torch (the tower's token counter is
passed in)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from ..errors import UsageError

@dataclass(frozen=True)
class Passage:
    text: str
    start: int      # character offsets into the document
    end: int
    line: int       # 1-based line of `start`

    def locator(self) -> dict[str, int]:
        return {"start": self.start, "end": self.end, "line": self.line}


_SENTENCE = re.compile(r"[^.!?\n]*(?:[.!?]+[\"')\]]*|\n\s*\n|\n|$)", re.S)
_WORD = re.compile(r"\S+")


def _sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of sentences (or lines / paragraphs), stripped of surrounding space."""
    spans = []
    for m in _SENTENCE.finditer(text):
        s, e = m.span()
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            spans.append((s, e))
    return spans


def split_passages(text: str, count_tokens: Callable[[str], int], max_tokens: int = 75,
                   overlap: int = 1) -> list[Passage]:
    """Split `text` into passages of at most `max_tokens` tokens, on sentence boundaries.

    Consecutive passages share `overlap` sentences so that a fact spanning a boundary is still
    found. A sentence longer than the limit is cut on word boundaries.
    """
    if max_tokens < 1:
        raise UsageError("max_tokens must be >= 1")
    units: list[tuple[int, int, int]] = []  # (start, end, tokens)
    for s, e in _sentences(text):
        n = count_tokens(text[s:e])
        if n <= max_tokens:
            units.append((s, e, n))
            continue
        # Too long: greedy word packing inside the sentence.
        cur_s = cur_e = None
        for w in _WORD.finditer(text, s, e):
            if cur_s is None:
                cur_s, cur_e = w.start(), w.end()
            elif count_tokens(text[cur_s:w.end()]) <= max_tokens:
                cur_e = w.end()
            else:
                units.extend(_bisect(text, cur_s, cur_e, count_tokens, max_tokens))
                cur_s, cur_e = w.start(), w.end()
        if cur_s is not None:
            units.extend(_bisect(text, cur_s, cur_e, count_tokens, max_tokens))

    passages: list[Passage] = []
    i = 0
    while i < len(units):
        j = i
        while j + 1 < len(units) and count_tokens(text[units[i][0]:units[j + 1][1]]) <= max_tokens:
            j += 1
        s, e = units[i][0], units[j][1]
        passages.append(Passage(text=text[s:e], start=s, end=e, line=text.count("\n", 0, s) + 1))
        if j + 1 >= len(units):
            break
        # Step forward, keeping `overlap` sentences, but always make progress.
        i = max(i + 1, j + 1 - overlap)
    return passages


def _bisect(text: str, s: int, e: int, count_tokens: Callable[[str], int], max_tokens: int) -> list[tuple[int, int, int]]:
    """Cut text[s:e] (one giant "word") in halves until every piece fits."""
    n = count_tokens(text[s:e])
    if n <= max_tokens or e - s <= 1:
        return [(s, e, n)]
    mid = (s + e) // 2
    return _bisect(text, s, mid, count_tokens, max_tokens) + _bisect(text, mid, e, count_tokens, max_tokens)
