"""What a search asks for: one query (text, image or audio), result types, k — validated."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

from .errors import UsageError

MAX_K = 10_000


@dataclass(frozen=True)
class Filters:
    """Which files a search may return. Paths are absolute: a folder (everything below), a file, or a glob
    (`*` also matches across folders, as SQLite's GLOB does); dates are seconds since the epoch (`after`
    inclusive, `before` exclusive); sizes in bytes (inclusive); extensions lower-case without the dot."""

    paths: tuple[str, ...] = ()
    after: float | None = None
    before: float | None = None
    min_size: int | None = None
    max_size: int | None = None
    exts: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return self == Filters()


def parse_filters(paths: Iterable[str] | str | None = None, after: Any = None, before: Any = None,
                  min_size: Any = None, max_size: Any = None, exts: Iterable[str] | str | None = None) -> Filters:
    """Filters from what a user types: `~/photos`, `*.jpg`, '2023-06-01', '2MB', 'jpg,png'."""
    from .index.choose import parse_bytes

    def listed(v: Iterable[str] | str | None) -> list[str]:
        v = [v] if isinstance(v, str) else list(v or [])
        return [x.strip() for raw in v for x in str(raw).split(",") if x.strip()]

    def absolute(p: str) -> str:
        p = os.path.expanduser(p)
        if any(c in p for c in "*?["):
            return p if os.path.isabs(p) or p.startswith("*") else os.path.join(os.getcwd(), p)
        return os.path.abspath(p)

    def when(v: Any, name: str) -> float | None:
        from .dates import parse_date

        if v is None or v == "":
            return None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        t = parse_date(str(v))
        if t is None:
            raise UsageError(f"--{name}: not a date: {v!r} (use YYYY-MM-DD or YYYY-MM-DDTHH:MM)")
        return t

    def size(v: Any, name: str) -> int | None:
        if v is None or v == "":
            return None
        n = v if isinstance(v, int) and not isinstance(v, bool) else parse_bytes(str(v))
        if n < 0:
            raise UsageError(f"--{name} must not be negative")
        return n

    f = Filters(paths=tuple(absolute(p) for p in listed(paths)), after=when(after, "after"),
                before=when(before, "before"), min_size=size(min_size, "min-size"), max_size=size(max_size, "max-size"),
                exts=tuple(e.lower().lstrip(".") for e in listed(exts)))
    if f.after is not None and f.before is not None and f.after >= f.before:
        raise UsageError("--after must be earlier than --before")
    return f


@dataclass(frozen=True)
class Query:
    modality: str
    value: Any
    types: tuple[str, ...]
    k: int


def parse_types(types: Iterable[str] | str | None, query_modality: str) -> tuple[str, ...]:
    """Result modalities: as given, or by default every item modality other than the query's. A container
    modality (video) as a type means the items of its files."""
    from .modalities import item_modality_names, modality_names

    names = modality_names()
    if types is None:
        return tuple(m for m in item_modality_names() if m != query_modality)
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


def result_lanes(types: Iterable[str]) -> list[tuple[str, str]]:
    """(result type, item modality) pairs that searching and reading go through: a container type (video)
    means its files' items of every item modality."""
    from .modalities import get_modality, item_modality_names

    lanes: list[tuple[str, str]] = []
    for t in types:
        lanes += [(t, m) for m in item_modality_names()] if get_modality(t).container else [(t, t)]
    return lanes


def make_query(*, text: str | None = None, image: Any = None, audio: Any = None, k: int = 10,
               types: Iterable[str] | str | None = None, **others: Any) -> Query:
    """One query: `text`, `image`, `audio`, or a value for another registered modality by its name."""
    from .modalities import get_modality, item_modality_names

    given = [(m, v) for m, v in {"text": text, "image": image, "audio": audio, **others}.items() if v is not None]
    if len(given) != 1:
        raise UsageError(f"give exactly one query: {', '.join(item_modality_names())}")
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


SORTS = ("relevance", "date", "path")
MODES = ("vector", "keyword", "hybrid")


def check_mode(mode: str | None) -> str:
    mode = mode or "vector"
    if mode not in MODES:
        raise UsageError(f"unknown search mode {mode!r}; valid: {', '.join(MODES)}")
    return mode


def check_sort(sort: str | None) -> str:
    sort = sort or "relevance"
    if sort not in SORTS:
        raise UsageError(f"unknown sort {sort!r}; valid: {', '.join(SORTS)}")
    return sort


def sort_hits(hits: list, sort: str) -> list:
    """Order the hits that passed the cutoff: by relevance (as found), date (newest first), or path; ranks
    follow the new order."""
    from dataclasses import replace

    if sort == "date":
        hits = sorted(hits, key=lambda h: -(h.date if h.date is not None else float("-inf")))
    elif sort == "path":
        hits = sorted(hits, key=lambda h: (h.path, h.locator.get("start", 0), h.locator.get("line", 0)))
    else:
        return hits
    return [replace(h, rank=i + 1) for i, h in enumerate(hits)]
