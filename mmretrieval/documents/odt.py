"""OpenDocument text (.odt): paragraphs, lists and tables in reading order, one section per heading; pictures
stored in the package as figures; meta.xml as metadata. Read from a bounded zip (`zipped`)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Iterator

from ..errors import DecodeError
from .base import DocumentFormat, Figure, Limits, Remark, Text, find_figure, picture, register_format
from .metadata import xml_properties
from .zipped import Container

T = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
DRAW = "{urn:oasis:names:tc:opendocument:xmlns:drawing:1.0}"
XLINK = "{http://www.w3.org/1999/xlink}"
OFFICE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"


def _text(el: ET.Element, out: list[str], pics: list[str]) -> None:
    """The text of a paragraph or heading: spaces, tabs and line breaks as ODF writes them; notes' bodies
    skipped here (they are paragraphs of their own, read in turn)."""
    if el.text:
        out.append(el.text)
    for child in el:
        tag = child.tag
        if tag == T + "s":
            out.append(" " * int(child.get(T + "c") or 1))
        elif tag == T + "tab":
            out.append("\t")
        elif tag == T + "line-break":
            out.append("\n")
        elif tag == DRAW + "image":
            href = child.get(XLINK + "href")
            if href:
                pics.append(href)
        elif tag not in (T + "note", T + "p", T + "h"):
            _text(child, out, pics)
        if child.tail:
            out.append(child.tail)


def _blocks(root: ET.Element) -> Iterator[tuple[bool, str, list[str]]]:
    """(is heading, text, picture members) of each paragraph and heading in document order."""
    for el in root.iter():
        if el.tag in (T + "p", T + "h"):
            out: list[str] = []
            pics: list[str] = []
            _text(el, out, pics)
            yield el.tag == T + "h", "".join(out), pics


def read_odt(data: bytes | None, path: str, limits: Limits) -> Iterator[Text | Figure | Remark]:
    with Container(data, path, limits.max_inflated, "OpenDocument file") as c:
        root = c.xml("content.xml")
        body = root.find(f"{OFFICE}body")
        section: str | None = None
        lines: list[str] = []
        figure = 0
        for heading, text, pics in _blocks(body if body is not None else root):
            if heading and text.strip():
                if any(t.strip() for t in lines):
                    yield Text("\n".join(lines), {"section": section} if section else {})
                section, lines = " ".join(text.split())[:200], []
            lines.append(text)
            for href in pics:
                if c.has(href):
                    yield Figure(picture(c.read(href)), {**({"section": section} if section else {}),
                                                          "figure": figure})
                    figure += 1
        if any(t.strip() for t in lines):
            yield Text("\n".join(lines), {"section": section} if section else {})


def _metadata(data: bytes | None, path: str) -> tuple[float | None, list[str]]:
    try:
        with Container(data, path, 16 << 20, "OpenDocument file") as c:
            return xml_properties(c.xml("meta.xml")) if c.has("meta.xml") else (None, [])
    except DecodeError:
        return None, []


ODT = register_format(DocumentFormat(name="odt", extensions=frozenset({".odt", ".ott"}), read=read_odt,
                                     metadata=_metadata,
                                     figure=lambda path, where: find_figure(read_odt, path, where)))
