"""What a document format is, and the registry the text modality asks.

A `DocumentFormat` turns one file into `Block`s in reading order: text with where it sits (a page, a section,
a time range) and figures (an embedded chart or photo, a scanned page) with theirs. The text modality cuts the
text into passages that fit the tower and makes image items of the figures, so a format knows nothing of towers.
Adding a format = one module that builds a `DocumentFormat` and calls `register_format`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from ..dates import span
from ..errors import UsageError


@dataclass(frozen=True)
class Text:
    """A run of text and where it sits: {"page": 3}, {"section": "Chapter 2"}, {"t_start": 1.5, "t_end": 4.0}.
    Passages never cross two `Text` blocks, so every passage has one place."""

    text: str
    where: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Figure:
    """An image inside the document: `load()` gives its PIL image (lazily, so a skipped figure is never decoded);
    `where` says where it sits and which figure it is ({"page": 2, "figure": 1}); `scan`: a whole page rendered
    because it has no text layer (it is also read by OCR when that is installed)."""

    load: Callable[[], Any]
    where: dict[str, Any]
    width: int = 0
    height: int = 0
    scan: bool = False


@dataclass(frozen=True)
class Remark:
    """Something the user should know about the file (read only in part, say)."""

    text: str


Block = Text | Figure | Remark


@dataclass(frozen=True)
class Limits:
    """Bounds on what one document may cost: pages read, figures kept, bytes inflated from a zip container."""

    max_pages: int = 5000
    max_figures: int = 500
    min_figure_px: int = 64            # figures smaller than this on either side are decorations (logos, rules)
    max_inflated: int = 256 << 20      # bytes read out of one zip container, all members together


@dataclass(frozen=True)
class DocumentFormat:
    name: str
    extensions: frozenset[str]
    # (bytes or None when too large to hold, path, limits) -> blocks in reading order. Raises DecodeError.
    read: Callable[[bytes | None, str, Limits], Iterable[Block]]
    # (bytes or None, path) -> (date or None, tags): the document's own title, author, dates (see metadata.py).
    metadata: Callable[[bytes | None, str], tuple[float | None, list[str]]] | None = None
    # (path, figure's `where`) -> its PIL image again, for thumbnails; None: the format cannot find it again.
    figure: Callable[[str, dict[str, Any]], Any] | None = None


_FORMATS: dict[str, DocumentFormat] = {}


def register_format(fmt: DocumentFormat, *, replace: bool = False) -> DocumentFormat:
    """Make a document format known to the text modality (it claims the format's extensions)."""
    if fmt.name in _FORMATS and not replace:
        raise UsageError(f"a document format named {fmt.name!r} is already registered (pass replace=True)")
    for other in _FORMATS.values():
        both = sorted(fmt.extensions & other.extensions) if other.name != fmt.name else []
        if both:
            raise UsageError(f"document formats {other.name!r} and {fmt.name!r} both claim {', '.join(both)}")
    _FORMATS[fmt.name] = fmt
    return fmt


def formats() -> list[DocumentFormat]:
    return list(_FORMATS.values())


def extensions() -> frozenset[str]:
    return frozenset(e for f in _FORMATS.values() for e in f.extensions)


def format_of(path: str | os.PathLike) -> DocumentFormat | None:
    ext = os.path.splitext(os.fspath(path))[1].lower()
    return next((f for f in _FORMATS.values() if ext in f.extensions), None)


def picture(blob: bytes) -> Callable[[], Any]:
    """A figure's loader for a picture stored in the document (a zip member): decoded only when asked, with the
    image decoder's bomb guard."""
    def load() -> Any:
        from ..encoders.pixels import load_image
        return load_image(blob)
    return load


def find_figure(read: Callable[[bytes | None, str, Limits], Iterable[Block]], path: str,
                where: dict[str, Any]) -> Any:
    """A figure found again by its number, reading the document anew (for a thumbnail)."""
    from ..errors import DecodeError

    for b in read(None, path, Limits()):
        if isinstance(b, Figure) and b.where.get("figure") == where.get("figure"):
            return b.load()
    raise DecodeError(f"figure {where.get('figure')} is no longer in {path}")


def blocks(fmt: DocumentFormat, data: bytes | None, path: str, limits: Limits | None = None) -> Iterator[Block]:
    yield from fmt.read(data, path, limits or Limits())


def place(where: dict[str, Any]) -> str:
    """Where a block sits, as a hit line shows it after the path: ' p. 12', ' § Results', ' [1:02.5–1:07.0]',
    with ' figure 2' or ' page image' for figures; '' when the block has no place but its line."""
    parts = []
    if "chapter" in where and "section" not in where:
        parts.append(f"ch. {where['chapter']}")
    if "page" in where:
        parts.append(f"p. {where['page']}")
    if "section" in where:
        parts.append(f"§ {where['section']}")
    if "t_start" in where:
        parts.append(span(where["t_start"], where.get("t_end", where["t_start"])))
    if where.get("scan"):
        parts.append("page image")
    elif "figure" in where:
        parts.append(f"figure {int(where['figure']) + 1}")
    if where.get("ocr"):
        parts.append("[text in image]")
    return (" " + " ".join(parts)) if parts else ""
