"""Text inside images (scanned pages, photos of signs and slides), read by PP-OCRv4 through RapidOCR: its
detection and recognition models ship inside the `rapidocr-onnxruntime` wheel, so it runs offline
(`pip install 'mmretrieval[ocr]'`). One reader per process, built on first use; its calls are serialised
(decoding runs in threads; the ONNX sessions each use the cores already)."""
from __future__ import annotations

import logging
import threading
from typing import Any

from ..errors import DecodeError

_LOCK = threading.Lock()
_READER: Any = None
# Lines the recogniser is less sure of than this are noise (texture read as letters), not text.
MIN_CONFIDENCE = 0.6
# Images are read with their longer side at most this (the detector's own limit is 2000; beyond it small print
# gains nothing and time grows with the area).
MAX_SIDE = 2000


def available() -> bool:
    """Is the OCR extra installed? (Checked without loading its models.)"""
    import importlib.util
    return importlib.util.find_spec("rapidocr_onnxruntime") is not None


def _reader() -> Any:
    global _READER
    if _READER is None:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError:
            raise DecodeError("OCR needs the ocr extra: pip install 'mmretrieval[ocr]'") from None
        for name in ("RapidOCR", "OrtInferSession"):  # its own stderr handlers, at DEBUG
            logging.getLogger(name).setLevel(logging.ERROR)
        _READER = RapidOCR()
    return _READER


def read_text(image: Any) -> str:
    """The text in a PIL image, line by line in reading order (top to bottom, then left to right); '' when none."""
    import numpy as np

    img = image.convert("RGB")
    if max(img.size) > MAX_SIDE:
        img = img.copy()
        img.thumbnail((MAX_SIDE, MAX_SIDE))
    with _LOCK:
        result, _ = _reader()(np.asarray(img)[:, :, ::-1])  # it takes OpenCV's BGR order
    lines = [(box, text) for box, text, score in (result or []) if float(score) >= MIN_CONFIDENCE and text.strip()]
    return "\n".join(_reading_order(lines))


def _reading_order(lines: list[tuple[Any, str]]) -> list[str]:
    """Boxes on one visual line (overlapping vertically by half a line's height) joined left to right."""
    boxes = []
    for box, text in lines:
        ys = [p[1] for p in box]
        xs = [p[0] for p in box]
        boxes.append((min(ys), max(ys), min(xs), text))
    boxes.sort()
    rows: list[list[tuple[float, float, float, str]]] = []
    for b in boxes:
        if rows:
            top, bottom = rows[-1][0][0], rows[-1][0][1]
            if b[0] < (top + bottom) / 2:
                rows[-1].append(b)
                continue
        rows.append([b])
    return [" ".join(t for *_, t in sorted(row, key=lambda r: r[2])) for row in rows]
