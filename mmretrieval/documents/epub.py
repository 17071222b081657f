"""EPUB: the chapters in spine order (each read as HTML, one section per heading, else the chapter's title),
the pictures they show as figures, the package's Dublin Core metadata. Read from a bounded zip (`zipped`)."""
from __future__ import annotations

import posixpath
import re
from typing import Any, Callable, Iterator
from urllib.parse import unquote

from ..errors import DecodeError
from .base import DocumentFormat, Figure, Limits, Remark, Text, find_figure, picture, register_format
from .html import html_text, read_html
from .metadata import xml_properties
from .zipped import Container, local


def _opf(c: Container) -> str:
    if c.has("META-INF/container.xml"):
        for el in c.xml("META-INF/container.xml").iter():
            if local(el.tag) == "rootfile" and el.get("full-path"):
                return el.get("full-path") or ""
    found = sorted(n for n in c.names if n.lower().endswith(".opf"))
    if not found:
        raise DecodeError("damaged EPUB: no package document (.opf)")
    return found[0]


def _spine(c: Container, opf: str) -> list[str]:
    root = c.xml(opf)
    base = posixpath.dirname(opf)
    items = {el.get("id"): el for el in root.iter() if local(el.tag) == "item"}
    order = [items[ref.get("idref")] for ref in root.iter() if local(ref.tag) == "itemref"
             and ref.get("idref") in items and ref.get("linear") != "no"]
    if not order:  # no spine: every XHTML document in manifest order
        order = [el for el in items.values() if "html" in (el.get("media-type") or "")]
    return [posixpath.normpath(posixpath.join(base, unquote(el.get("href") or ""))) for el in order]


def read_epub(data: bytes | None, path: str, limits: Limits) -> Iterator[Text | Figure | Remark]:
    with Container(data, path, limits.max_inflated, "EPUB") as c:
        chapters = _spine(c, _opf(c))
        figure = 0
        for n, name in enumerate(chapters, 1):
            if not c.has(name):
                yield Remark(f"chapter {name} listed but missing")
                continue
            markup, _ = html_text(c.read(name))
            title = _first_heading(markup) or posixpath.splitext(posixpath.basename(name))[0]
            folder = posixpath.dirname(name)

            def resolve(src: str, folder: str = folder) -> Callable[[], Any] | None:
                member = posixpath.normpath(posixpath.join(folder, unquote(src.split("#")[0])))
                return picture(c.read(member)) if c.has(member) else None

            for b in read_html(markup, resolve=resolve, where={"chapter": n}, limits=limits):
                where = dict(b.where)
                where.setdefault("section", title)
                if isinstance(b, Figure):
                    where["figure"] = figure
                    figure += 1
                    yield Figure(b.load, where)
                else:
                    yield Text(b.text, where)


_H = re.compile(r"<h[1-3][^>]*>(.*?)</h[1-3]>|<title[^>]*>(.*?)</title>", re.I | re.S)


def _first_heading(markup: str) -> str | None:
    m = _H.search(markup[:200_000])
    if not m:
        return None
    text = " ".join(re.sub(r"<[^>]*>", " ", m.group(1) or m.group(2) or "").split())
    return text[:200] or None


def _metadata(data: bytes | None, path: str) -> tuple[float | None, list[str]]:
    try:
        with Container(data, path, 16 << 20, "EPUB") as c:
            opf = c.xml(_opf(c))
            meta = next((el for el in opf.iter() if local(el.tag) == "metadata"), None)
            return xml_properties(meta) if meta is not None else (None, [])
    except DecodeError:
        return None, []


EPUB = register_format(DocumentFormat(name="epub", extensions=frozenset({".epub"}), read=read_epub,
                                      metadata=_metadata,
                                      figure=lambda path, where: find_figure(read_epub, path, where)))
