"""Word (.docx): paragraphs and tables in reading order, one section per heading; footnotes, endnotes and
comments as their own sections; pictures as figures; the core properties as metadata. The XML is read
directly from a bounded zip (`zipped`), so a damaged or bomb-like file costs a bounded amount."""
from __future__ import annotations

import posixpath
import xml.etree.ElementTree as ET
from typing import Iterator

from ..errors import DecodeError
from .base import DocumentFormat, Figure, Limits, Remark, Text, find_figure, picture, register_format
from .zipped import Container, local
from .metadata import core_properties

W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"
MAIN = "word/document.xml"
EXTRA_PARTS = (("word/footnotes.xml", "footnotes"), ("word/endnotes.xml", "endnotes"),
               ("word/comments.xml", "comments"))


def _rels(c: Container, part: str) -> dict[str, str]:
    """A part's relationship ids -> member names ('rId5' -> 'word/media/image1.png')."""
    name = posixpath.join(posixpath.dirname(part), "_rels", posixpath.basename(part) + ".rels")
    if not c.has(name):
        return {}
    out = {}
    for rel in c.xml(name).iter(PKG_REL + "Relationship"):
        if rel.get("TargetMode") == "External":
            continue
        target = rel.get("Target") or ""
        out[rel.get("Id") or ""] = posixpath.normpath(target.lstrip("/") if target.startswith("/")
                                                      else posixpath.join(posixpath.dirname(part), target))
    return out


def _paragraphs(el: ET.Element) -> Iterator[tuple[ET.Element, str, list[str]]]:
    """(paragraph, its text, its picture relationship ids) in document order; a paragraph inside another's text
    box comes after it, its text not repeated in the outer one."""
    for child in el:
        if child.tag == W + "p":
            parts: list[str] = []
            pics: list[str] = []
            inner: list[ET.Element] = []
            _runs(child, parts, pics, inner)
            yield child, "".join(parts), pics
            for p in inner:
                yield from _paragraphs(_Wrap(p))
        elif child.tag == W + "tbl":
            for row in child.iter(W + "tr"):
                cells = []
                for cell in row.findall(W + "tc"):
                    texts = [t for _, t, _ in _paragraphs(cell)]
                    cells.append(" ".join(t for t in texts if t))
                yield row, "\t".join(cells), [pic for cell in row.findall(W + "tc")
                                              for _, _, ps in _paragraphs(cell) for pic in ps]
        else:
            yield from _paragraphs(child)


class _Wrap(list):
    """One element as a sequence of children, so a nested paragraph walks like a body holding it."""

    def __init__(self, el: ET.Element) -> None:
        super().__init__([el])


def _runs(el: ET.Element, parts: list[str], pics: list[str], inner: list[ET.Element]) -> None:
    for child in el:
        tag = child.tag
        if tag == W + "t":
            parts.append(child.text or "")
        elif tag == W + "tab":
            parts.append("\t")
        elif tag in (W + "br", W + "cr"):
            parts.append("\n")
        elif tag == W + "p":
            inner.append(child)
        elif tag in (W + "delText", W + "instrText"):
            continue  # deleted revisions and field codes are not the text
        elif local(tag) == "blip":
            rid = child.get(R + "embed")
            if rid:
                pics.append(rid)
        else:
            _runs(child, parts, pics, inner)


def _heading(p: ET.Element) -> bool:
    style = p.find(f"{W}pPr/{W}pStyle")
    val = (style.get(W + "val") or "").lower() if style is not None else ""
    return val.startswith("heading") or val == "title" or p.find(f"{W}pPr/{W}outlineLvl") is not None


def read_docx(data: bytes | None, path: str, limits: Limits) -> Iterator[Text | Figure | Remark]:
    with Container(data, path, limits.max_inflated, "Word file") as c:
        if not c.has(MAIN):
            raise DecodeError("damaged Word file: it has no word/document.xml")
        figure = 0
        for part, label in ((MAIN, None), *EXTRA_PARTS):
            if part != MAIN and not c.has(part):
                continue
            root = c.xml(part)
            rels = _rels(c, part) if part == MAIN else {}
            body = root.find(W + "body") if part == MAIN else root
            section, lines = label, []
            for p, text, pics in _paragraphs(body if body is not None else root):
                if part == MAIN and p.tag == W + "p" and _heading(p) and text.strip():
                    if lines:
                        yield Text("\n".join(lines), {"section": section} if section else {})
                    section, lines = " ".join(text.split())[:200], []
                lines.append(text)
                for rid in pics:
                    member = rels.get(rid)
                    if member and c.has(member):
                        where = {**({"section": section} if section else {}), "figure": figure}
                        figure += 1
                        yield Figure(picture(c.read(member)), where)
            if any(t.strip() for t in lines):
                yield Text("\n".join(lines), {"section": section} if section else {})



def _metadata(data: bytes | None, path: str) -> tuple[float | None, list[str]]:
    try:
        with Container(data, path, 16 << 20, "Word file") as c:
            return core_properties(c.xml("docProps/core.xml")) if c.has("docProps/core.xml") else (None, [])
    except DecodeError:
        return None, []


DOCX = register_format(DocumentFormat(name="docx", extensions=frozenset({".docx", ".docm", ".dotx"}),
                                      read=read_docx, metadata=_metadata,
                                      figure=lambda path, where: find_figure(read_docx, path, where)))
