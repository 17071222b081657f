"""Text inside images (scanned pages, photos of signs and slides), read by PaddleOCR's models through RapidOCR,
whose wheels ship the detection and recognition models, so it runs offline (`pip install 'mmretrieval[ocr]'`).

Two wheels are read (`ENGINES`, first installed wins; ``MMR_OCR_ENGINE`` picks one): ``rapidocr`` 3.x with
PP-OCRv6's small models, and the older ``rapidocr-onnxruntime`` 1.4 with PP-OCRv4's. `scripts/bench/documents.py`
measures them side by side (docs/documents.md). One reader per process, built on first use; its calls are
serialised (decoding runs in threads; the ONNX sessions each use the cores already)."""
from __future__ import annotations

import importlib.util
import logging
import os
import threading
from typing import Any, Callable

from ..errors import DecodeError

_LOCK = threading.Lock()
_READER: Callable[[Any], list[tuple[Any, str, float]]] | None = None
_ENGINE: str | None = None
# Lines the recogniser is less sure of than this are noise (texture read as letters), not text.
MIN_CONFIDENCE = 0.6
# Images are read with their longer side at most this (the detector's own limit is 2000; beyond it small print
# gains nothing and time grows with the area).
MAX_SIDE = 2000
# Text is found on the image with its longer side at most this, and read from the image itself. The engines'
# default (the shorter side at least 736) runs the detector on the whole page and more: ~0.6 GB at peak for
# any image, against ~0.15 GB for a sign and ~0.5 GB for a 2,000 px page at this limit, faster, with the same
# character error rate down to 16 px print on a 1,275 x 1,650 page (docs/documents.md).
DETECT_SIDE = 1280
# Lines are recognised one at a time: a batch is padded to its widest line, and a page's long lines in a batch
# of six doubled the peak without saving time.
RECOGNISE_BATCH = 1
# engine name -> the module that provides it, preferred first
ENGINES = {"pp-ocrv6": "rapidocr", "pp-ocrv4": "rapidocr_onnxruntime"}


def engine() -> str | None:
    """The OCR engine this process uses: ``MMR_OCR_ENGINE`` if set, else the first of `ENGINES` installed
    (None: neither is). Checked without loading models."""
    asked = os.environ.get("MMR_OCR_ENGINE")
    if asked:
        if asked not in ENGINES:
            raise DecodeError(f"MMR_OCR_ENGINE={asked!r}: it is one of {', '.join(ENGINES)}")
        return asked if importlib.util.find_spec(ENGINES[asked]) is not None else None
    return next((name for name, module in ENGINES.items() if importlib.util.find_spec(module) is not None), None)


def available() -> bool:
    """Is the OCR extra installed?"""
    return engine() is not None


def _reader() -> Callable[[Any], list[tuple[Any, str, float]]]:
    """A function from a BGR array to (box, text, score) per line, for this process's engine."""
    global _READER, _ENGINE
    name = engine()
    if _READER is None or _ENGINE != name:
        if name is None:
            raise DecodeError("OCR needs the ocr extra: pip install 'mmretrieval[ocr]'")
        if name == "pp-ocrv6":
            from rapidocr import RapidOCR

            # it logs each model file it finds, and every picture without text, to stderr
            v6 = RapidOCR(params={"Global.log_level": "critical", "Det.limit_type": "max",
                                  "Det.limit_side_len": DETECT_SIDE, "Rec.rec_batch_num": RECOGNISE_BATCH})

            def read(bgr: Any) -> list[tuple[Any, str, float]]:
                out = v6(bgr)
                boxes = getattr(out, "boxes", None)
                return [] if boxes is None else list(zip(boxes.tolist(), out.txts, out.scores))

            _READER = read
        else:
            from rapidocr_onnxruntime import RapidOCR as RapidOCRv4

            for logger in ("RapidOCR", "OrtInferSession"):  # its own stderr handlers, at DEBUG
                logging.getLogger(logger).setLevel(logging.ERROR)
            v4 = RapidOCRv4(det_limit_type="max", det_limit_side_len=DETECT_SIDE, rec_batch_num=RECOGNISE_BATCH)
            _READER = lambda bgr: v4(bgr)[0] or []  # noqa: E731
        _ENGINE = name
    return _READER


def read_text(image: Any) -> str:
    """The text in a PIL image, line by line in reading order; '' when none.

    Print under ~30 px high loses its spaces and letters in PP-OCRv4's recogniser ("Platform4fortrains"): when
    the lines found are that small, the image is read again enlarged to bring them to ~40 px."""
    img = image.convert("RGB")
    if max(img.size) > MAX_SIDE:
        img = img.copy()
        img.thumbnail((MAX_SIDE, MAX_SIDE))
    lines = _read(img)
    heights = sorted(h for h, *_ in lines)
    if heights and heights[len(heights) // 2] < SMALL_PRINT:
        factor = min(MAX_ENLARGE, TARGET_PRINT / max(heights[len(heights) // 2], 1.0),
                     MAX_SIDE / max(img.size))
        if factor > 1.2:
            from PIL import Image
            lines = _read(img.resize((round(img.width * factor), round(img.height * factor)), Image.LANCZOS))
    return "\n".join(_reading_order(lines))


SMALL_PRINT = 30
TARGET_PRINT = 40
MAX_ENLARGE = 3.0


def _read(img: Any) -> list[tuple[float, float, float, float, str]]:
    """(text height, centre x, centre y, slope, text) of each line the models are sure of."""
    import numpy as np

    with _LOCK:
        result = _reader()(np.ascontiguousarray(np.asarray(img)[:, :, ::-1]))  # it takes OpenCV's BGR order
    out = []
    for box, text, score in result:
        if float(score) < MIN_CONFIDENCE or not text.strip():
            continue
        (x0, y0), (x1, y1), _, (x3, y3) = box[0], box[1], box[2], box[3]
        cx = sum(p[0] for p in box) / 4
        cy = sum(p[1] for p in box) / 4
        height = ((x3 - x0) ** 2 + (y3 - y0) ** 2) ** 0.5
        slope = (y1 - y0) / (x1 - x0) if abs(x1 - x0) > 1e-6 else 0.0
        out.append((height, cx, cy, slope, text))
    return out


def _reading_order(lines: list[tuple[float, float, float, float, str]]) -> list[str]:
    """Pieces of one line (on the slant of a tilted photo too: the piece's centre lies on the line extended
    along its slope) joined left to right; lines top to bottom."""
    rows: list[list[tuple[float, float, float, float, str]]] = []
    for piece in sorted(lines, key=lambda p: p[2]):
        h, cx, cy, _, _ = piece
        for row in rows:
            ah, ax, ay, aslope, _ = row[0]
            if abs(cy - (ay + aslope * (cx - ax))) < 0.5 * min(h, ah):
                row.append(piece)
                break
        else:
            rows.append([piece])
    rows.sort(key=lambda r: r[0][2] - r[0][3] * r[0][1])  # where each line crosses x = 0
    return [" ".join(p[4] for p in sorted(row, key=lambda p: p[1])) for row in rows]
