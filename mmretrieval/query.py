"""What a search asks for: one query (text, image or audio), result types, k — validated."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

from .errors import UsageError
from .modalities import get_modality, modality_names

MAX_K = 10_000


@dataclass(frozen=True)
class Query:
    modality: str
    value: Any
    types: tuple[str, ...]
    k: int


def parse_types(types: Iterable[str] | str | None, query_modality: str) -> tuple[str, ...]:
    """Result modalities: as given, or by default every modality other than the query's."""
    names = modality_names()
    if types is None:
        return tuple(m for m in names if m != query_modality)
    if isinstance(types, str):
        types = [types]
    types = [t for raw in types for t in str(raw).split(",") if t.strip()]  # "image,audio" or repeated
    out = []
    for t in types:
        t = t.strip().lower()
        if t not in names:
            raise UsageError(f"unknown result type {t!r}; valid: {', '.join(names)}")
        if t not in out:
            out.append(t)
    if not out:
        raise UsageError(f"no result types given; valid: {', '.join(names)}")
    return tuple(out)


def make_query(*, text: str | None = None, image: Any = None, audio: Any = None, k: int = 10,
               types: Iterable[str] | str | None = None, **others: Any) -> Query:
    """One query: `text`, `image`, `audio`, or a value for another registered modality by its name."""
    given = [(m, v) for m, v in {"text": text, "image": image, "audio": audio, **others}.items() if v is not None]
    if len(given) != 1:
        raise UsageError(f"give exactly one query: {', '.join(modality_names())}")
    modality, value = given[0]
    m = get_modality(modality)
    if m.check_query is not None:
        m.check_query(value)
    if m.file_query and isinstance(value, (str, os.PathLike)):
        if not os.path.isfile(os.path.expanduser(os.fspath(value))):
            raise UsageError(f"{modality} query file not found: {value}")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise UsageError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    return Query(modality, value, parse_types(types, modality), k)
