"""What documents say about themselves (title, author, subject, keywords, dates), as the (date, tags) that the
text modality stores for date filters and keyword search. Unreadable metadata is simply absent."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from ..dates import parse_date
from .zipped import local

TAG_FIELDS = ("title", "creator", "author", "subject", "description", "keywords", "initial-creator")
DATE_FIELDS = ("created", "creation-date", "date", "modified")


def xml_properties(root: ET.Element) -> tuple[float | None, list[str]]:
    """Dublin Core style properties (OOXML docProps/core.xml, ODF meta.xml, an EPUB's OPF metadata)."""
    found: dict[str, str] = {}
    for el in root.iter():
        name = local(el.tag).lower()
        text = " ".join((el.text or "").split())
        if text and name not in found:
            found[name] = text
    tags = [found[k][:500] for k in TAG_FIELDS if k in found]
    when = next((d for k in DATE_FIELDS if k in found and (d := parse_date(found[k])) is not None), None)
    return when, list(dict.fromkeys(tags))


core_properties = xml_properties

_PDF_DATE = re.compile(r"^(?:D:)?(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?")


def pdf_date(raw: str) -> float | None:
    """'D:20200131154500+01'00'' -> epoch seconds (the zone is ignored, as EXIF's is); None when unreadable."""
    m = _PDF_DATE.match(raw.strip())
    if not m:
        return None
    y, mo, d, h, mi, s = (g or "" for g in m.groups())
    return parse_date(f"{y}-{mo or '01'}-{d or '01'} {h or '00'}:{mi or '00'}:{s or '00'}")
