"""PDF, through PDFium (pypdfium2: permissive licence; 2.2x pypdf's pages/s on the real-world PDFs here, and it
reads the fuzzed and damaged ones pypdf refuses; it also renders, which scanned pages need).

Each page's text layer is one block with its page number. Pictures placed on a page become figures (those
smaller than `Limits.min_figure_px` are decorations, counted and skipped). A page with content but no text
layer (a scan, a photo, a chart drawn as paths) is rendered whole as one figure marked `scan`.
PDFium is not thread-safe, and decoding runs in worker threads: every call into it holds `PDFIUM`.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator

from ..errors import DecodeError
from .base import DocumentFormat, Figure, Limits, Remark, Text, register_format
from .metadata import pdf_date

PDFIUM = threading.RLock()
# A page with fewer characters than this in its text layer that draws anything else is rendered whole: a scan
# (its stray page number aside), a photo, a chart drawn as paths.
MIN_PAGE_CHARS = 16
# Scans are rendered with their longer side at this many pixels (OCR reads 10-pt print at this size; the image
# tower downsamples anyway), and never above 300 dpi.
RENDER_PX = 1600
MAX_DPI = 300


@contextmanager
def _document(data: bytes | None, path: str) -> Iterator[Any]:
    import pypdfium2 as pdfium
    import pypdfium2.raw as c

    with PDFIUM:
        try:
            doc = pdfium.PdfDocument(data if data is not None else path)
        except pdfium.PdfiumError as e:
            code = getattr(e, "err_code", None)
            if code == c.FPDF_ERR_PASSWORD:
                raise DecodeError("encrypted PDF: it needs a password to open") from None
            if code == c.FPDF_ERR_SECURITY:
                raise DecodeError("encrypted PDF with an unsupported security scheme") from None
            raise DecodeError("damaged PDF (PDFium cannot open it)") from None
    try:
        yield doc
    finally:
        with PDFIUM:
            doc.close()


def _image_objects(page: Any) -> list[Any]:
    import pypdfium2.raw as c
    return list(page.get_objects(filter=[c.FPDF_PAGEOBJ_IMAGE], max_depth=4))


def _drawn(page: Any) -> bool:
    """Does the page draw anything but text (pictures, paths, shadings)?"""
    import pypdfium2.raw as c
    return any(o.type != c.FPDF_PAGEOBJ_TEXT for o in page.get_objects(max_depth=4))


def _image(obj: Any) -> Any:
    """An image object's pixels as PIL: decoded as stored, else as PDFium draws it (masks, odd colour spaces)."""
    import pypdfium2 as pdfium

    with PDFIUM:
        for render in (False, True):
            try:
                return obj.get_bitmap(render=render).to_pil().convert("RGB")
            except (pdfium.PdfiumError, ValueError, OSError):
                continue
    raise DecodeError("a picture PDFium cannot decode")


def _render(page: Any) -> Any:
    with PDFIUM:
        w, h = page.get_size()
        scale = min(RENDER_PX / max(w, h, 1.0), MAX_DPI / 72)
        return page.render(scale=scale).to_pil().convert("RGB")


def _page_blocks(page: Any, number: int, limits: Limits, figures: list[int]) -> Iterator[Text | Figure]:
    """One page's blocks. `figures`: [kept, skipped as too small, skipped over the cap], updated."""
    with PDFIUM:
        text = page.get_textpage().get_text_range()
        images = _image_objects(page)
        sizes = [o.get_px_size() for o in images]
        drawn = len(text.strip()) < MIN_PAGE_CHARS and (bool(images) or _drawn(page))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.strip():
        yield Text(text, {"page": number})
    if drawn:
        yield Figure(lambda: _render(page), {"page": number, "scan": True}, scan=True)
        return
    for k, (obj, (w, h)) in enumerate(zip(images, sizes)):
        if min(w, h) < limits.min_figure_px:
            figures[1] += 1
        elif figures[0] >= limits.max_figures:
            figures[2] += 1
        else:
            figures[0] += 1
            yield Figure(lambda obj=obj: _image(obj), {"page": number, "figure": k}, width=w, height=h)


def read_pdf(data: bytes | None, path: str, limits: Limits) -> Iterator[Text | Figure | Remark]:
    with _document(data, path) as doc:
        with PDFIUM:
            n = len(doc)
        if n == 0:
            raise DecodeError("PDF with no pages")
        figures = [0, 0, 0]
        unreadable = 0
        for i in range(min(n, limits.max_pages)):
            try:
                with PDFIUM:
                    page = doc[i]
            except Exception:  # PDFium names no error class for a page it cannot load
                unreadable += 1
                continue
            try:
                yield from _page_blocks(page, i + 1, limits, figures)
            finally:
                with PDFIUM:
                    page.close()
        if n > limits.max_pages:
            yield Remark(f"read its first {limits.max_pages:,} of {n:,} pages")
        if unreadable:
            yield Remark(f"{unreadable} damaged page(s) skipped")
        if figures[1]:
            yield Remark(f"{figures[1]} picture(s) under {limits.min_figure_px} px skipped")
        if figures[2]:
            yield Remark(f"{figures[2]} picture(s) over the cap of {limits.max_figures} skipped")


def _figure(path: str, where: dict[str, Any]) -> Any:
    with _document(None, path) as doc:
        with PDFIUM:
            if not 1 <= int(where.get("page", 0)) <= len(doc):
                raise DecodeError(f"page {where.get('page')} is no longer in {path}")
            page = doc[int(where["page"]) - 1]
        try:
            if where.get("scan"):
                return _render(page)
            with PDFIUM:
                images = _image_objects(page)
            k = int(where.get("figure", -1))
            if not 0 <= k < len(images):
                raise DecodeError(f"figure {k} of page {where['page']} is no longer in {path}")
            return _image(images[k])
        finally:
            with PDFIUM:
                page.close()


def _metadata(data: bytes | None, path: str) -> tuple[float | None, list[str]]:
    try:
        with _document(data, path) as doc:
            with PDFIUM:
                meta = doc.get_metadata_dict(skip_empty=True)
    except DecodeError:
        return None, []
    tags = [" ".join(str(meta[k]).replace("\x00", "").split())[:500] for k in ("Title", "Author", "Subject", "Keywords")
            if meta.get(k)]
    when = next((d for k in ("CreationDate", "ModDate") if meta.get(k) and (d := pdf_date(str(meta[k])))), None)
    return when, [t for t in tags if t]


PDF = register_format(DocumentFormat(name="pdf", extensions=frozenset({".pdf"}), read=read_pdf,
                                     metadata=_metadata, figure=_figure))
