"""What a search asks for: one query (text, image or audio), result types, k — validated."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

from .errors import UsageError

MODALITIES = ("text", "image", "audio")
MAX_K = 10_000


@dataclass(frozen=True)
class Query:
    modality: str
    value: Any
    types: tuple[str, ...]
    k: int


def parse_types(types: Iterable[str] | str | None, query_modality: str) -> tuple[str, ...]:
    """Result modalities: as given, or by default every modality other than the query's."""
    if types is None:
        out = tuple(m for m in MODALITIES if m != query_modality)
        return out
    if isinstance(types, str):
        types = [types]
    types = [t for raw in types for t in str(raw).split(",") if t.strip()]  # "image,audio" or repeated
    out = []
    for t in types:
        t = t.strip().lower()
        if t not in MODALITIES:
            raise UsageError(f"unknown result type {t!r}; valid: {', '.join(MODALITIES)}")
        if t not in out:
            out.append(t)
    if not out:
        raise UsageError(f"no result types given; valid: {', '.join(MODALITIES)}")
    return tuple(out)


def make_query(*, text: str | None = None, image: Any = None, audio: Any = None, k: int = 10,
               types: Iterable[str] | str | None = None) -> Query:
    given = [(m, v) for m, v in (("text", text), ("image", image), ("audio", audio)) if v is not None]
    if len(given) != 1:
        raise UsageError("give exactly one query: text, image or audio")
    modality, value = given[0]
    if modality == "text":
        if not isinstance(value, str):
            raise UsageError(f"a text query must be a string, got {type(value).__name__}")
        if not value.strip():
            raise UsageError("the text query is empty; type what you are looking for")
    if isinstance(value, (str, os.PathLike)) and modality != "text":
        if not os.path.isfile(os.path.expanduser(os.fspath(value))):
            raise UsageError(f"{modality} query file not found: {value}")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise UsageError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    return Query(modality, value, parse_types(types, modality), k)
