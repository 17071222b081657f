"""HTML: the main text (no scripts, styles, navigation, headers or footers), one section per heading (EPUB
chapters are read the same way, with their images as figures). Python's own parser: it recovers from any markup and is linear
in the input, so megabytes of script cost a scan, not a tree."""
from __future__ import annotations


import re
from html.parser import HTMLParser
from typing import Any, Callable, Iterator

from ..errors import DecodeError
from .base import DocumentFormat, Figure, Limits, Remark, Text, register_format
from .plain import decode_text_bytes

# Their content is never the page's text.
SKIP = frozenset({"script", "style", "noscript", "template", "svg", "math", "nav", "header", "footer", "aside",
                  "form", "button", "select", "option", "iframe", "object", "canvas"})
BLOCK = frozenset({"p", "div", "br", "li", "ul", "ol", "dl", "dt", "dd", "tr", "table", "section", "article",
                   "main", "blockquote", "pre", "figure", "figcaption", "hr", "address", "h1", "h2", "h3", "h4",
                   "h5", "h6", "caption", "body", "td", "th"})
HEADINGS = {"h1": 1, "h2": 2, "h3": 3}
VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "embed", "source", "track",
                  "wbr", "param"})
MAX_HTML = 64 << 20
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.I)


class _Reader(HTMLParser):
    """Collects (section heading, text) runs and image sources, in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.skipping: list[str] = []
        self.runs: list[tuple[str | None, list[str]]] = [(None, [])]
        self.heading: list[str] | None = None
        self.title: list[str] = []
        self.in_title = False
        self.images: list[tuple[str | None, str, str]] = []  # (section, src, alt)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        if self.skipping:
            if tag == self.skipping[-1] and tag not in VOID:
                self.skipping.append(tag)
            return
        if tag in SKIP:
            self.skipping.append(tag)
            return
        if tag in HEADINGS:
            self.heading = []
        elif tag == "img":
            a = dict(attrs)
            if a.get("src"):
                self.images.append((self.runs[-1][0], a["src"] or "", a.get("alt") or ""))
        if tag in BLOCK:
            self._out("\n")
        elif tag in ("td", "th"):
            self._out("\t")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        if self.skipping:
            if tag == self.skipping[-1]:
                self.skipping.pop()
            return
        if tag in HEADINGS and self.heading is not None:
            name = " ".join("".join(self.heading).split())
            self.heading = None
            if name:
                self.runs.append((name[:200], [name, "\n"]))
            return
        if tag in BLOCK:
            self._out("\n")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
            return
        if self.skipping:
            return
        if self.heading is not None:
            self.heading.append(data)
        else:
            self._out(data)

    def _out(self, s: str) -> None:
        self.runs[-1][1].append(s)


def _tidy(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def html_text(data: bytes) -> tuple[str, str]:
    """HTML bytes to text, by the charset the page declares, else the one that fits."""
    m = _META_CHARSET.search(data[:4096])
    if m:
        try:
            return data.decode(m.group(1).decode("ascii"), errors="replace"), m.group(1).decode("ascii").lower()
        except LookupError:
            pass
    return decode_text_bytes(data)


def read_html(markup: str, *, resolve: Callable[[str], Callable[[], Any] | None] | None = None,
              where: dict[str, Any] | None = None, limits: Limits = Limits()) -> Iterator[Text | Figure]:
    """The blocks of one HTML page: a `Text` per section (its heading in "section"), then `Figure`s of the
    images `resolve` can load (src -> loader or None)."""
    r = _Reader()
    try:
        r.feed(markup)
        r.close()
    except (AssertionError, ValueError) as e:  # html.parser gives up on a few broken declarations
        raise DecodeError(f"damaged HTML ({e})") from None
    base = dict(where or {})
    for section, parts in r.runs:
        text = _tidy("".join(parts))
        if text:
            yield Text(text, {**base, **({"section": section} if section else {})})
    if resolve is None:
        return
    for k, (section, src, alt) in enumerate(r.images):
        load = resolve(src)
        if load is not None:
            yield Figure(load, {**base, **({"section": section} if section else {}), "figure": k,
                                **({"alt": alt[:200]} if alt else {})})


def page_title(markup: str) -> str | None:
    r = _Reader()
    try:
        r.feed(markup[:1 << 20])
    except (AssertionError, ValueError):
        return None
    t = " ".join("".join(r.title).split())
    return t or None


def _read(data: bytes | None, path: str, limits: Limits) -> Iterator[Text | Figure | Remark]:
    if data is None:
        raise DecodeError(f"HTML page over {MAX_HTML >> 20} MB")
    markup, _ = html_text(data)
    # A saved page's images are files beside it, indexed as images in their own right: not figures again.
    yield from read_html(markup, limits=limits)


def _metadata(data: bytes | None, path: str) -> tuple[float | None, list[str]]:
    if data is None:
        return None, []
    title = page_title(html_text(data[:1 << 20])[0])
    return None, [title] if title else []


HTML = register_format(DocumentFormat(name="html", extensions=frozenset({".html", ".htm", ".xhtml"}),
                                      read=_read, metadata=_metadata))
