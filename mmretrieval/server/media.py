"""Thumbnails for the page: a JPEG for images, a waveform PNG for audio (cached beside the index)."""
from __future__ import annotations

import io
import mimetypes
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..encoders.image import load_image

THUMB_SIZE = 256
MEDIA_TYPES = {".md": "text/markdown; charset=utf-8", ".txt": "text/plain; charset=utf-8", ".flac": "audio/flac",
               ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/ogg", ".wav": "audio/wav",
               ".webp": "image/webp", ".aif": "audio/aiff", ".aiff": "audio/aiff"}


def media_type(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    return MEDIA_TYPES.get(ext) or mimetypes.guess_type(path)[0] or "application/octet-stream"


def image_thumbnail(path: str) -> bytes:
    img = load_image(path)
    img.thumbnail((THUMB_SIZE, THUMB_SIZE))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def waveform_png(path: str, start: float | None = None, end: float | None = None, width: int = 320,
                 height: int = 96) -> bytes:
    """The min/max envelope of the audio (the window's range highlighted), as a small PNG."""
    import librosa

    wave, sr = librosa.load(path, sr=8000, mono=True)
    img = Image.new("RGB", (width, height), (250, 250, 252))
    d = ImageDraw.Draw(img)
    n = max(1, wave.size)
    if start is not None and end is not None and n > 1:
        x0, x1 = int(start * sr / n * width), int(end * sr / n * width)
        d.rectangle((x0, 0, max(x0 + 1, x1), height), fill=(220, 232, 250))
    cols = np.array_split(wave if wave.size else np.zeros(1), width)
    peak = max(float(np.abs(wave).max()) if wave.size else 0.0, 1e-6)
    mid = height / 2
    for x, c in enumerate(cols):
        if c.size:
            lo, hi = float(c.min()) / peak, float(c.max()) / peak
            d.line((x, mid - hi * (mid - 4), x, mid - lo * (mid - 4)), fill=(40, 90, 170))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def cached(cache_dir: Path, key: str, make) -> bytes:
    cache_dir.mkdir(parents=True, exist_ok=True)
    f = cache_dir / key
    if f.is_file():
        return f.read_bytes()
    data = make()
    tmp = f.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, f)
    return data
