"""Audio: decoded mono at the tower's rate and cut into windows, one item each (or one pooled item per file)."""
from __future__ import annotations

import functools
import io
import os
from typing import Any, Iterator

import numpy as np

from ..dates import span
from ..encoders.waves import load_audio, windows
from .base import DecodeContext, Item, Modality, register_modality
from .metadata import media_metadata
from .sketch import SOUND_RATE, sound_likeness, sound_sketch

# What libsndfile reads, and the containers FFmpeg (PyAV) decodes audio from.
EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".opus", ".aif", ".aiff", ".aifc", ".au", ".snd",
                        ".w64", ".caf", ".m4a", ".m4b", ".aac", ".wma", ".webm", ".mka", ".wv", ".ape", ".amr",
                        ".ac3", ".mp2", ".spx"})


class PooledWindows(list):
    """All windows of one audio file, to be encoded and averaged into a single item."""


def decode(data: bytes | None, path: str, ctx: DecodeContext) -> Iterator[Item]:
    enc = ctx.space.audio  # whichever family's: it says its rate and windows
    sr = enc.sample_rate
    wave = load_audio(io.BytesIO(data) if data is not None else os.fspath(path), sr)
    wins = windows(wave, sr, enc.window_s, enc.hop_s)
    if ctx.options.audio_pooled and len(wins) > 1:
        loc = {"start": 0.0, "end": round(wave.size / sr, 3), "pooled_windows": len(wins)}
        yield Item(loc, None, PooledWindows(w.samples for w in wins), "audio")
        return
    for w in wins:
        yield Item(w.locator(), None, w.samples, "audio")


def describe(locator: dict[str, Any], text: str | None) -> tuple[str, str]:
    return "", "  " + span(locator.get("start", 0), locator.get("end", 0))


def waveform_png(path: str, start: float | None = None, end: float | None = None, width: int = 320,
                 height: int = 96) -> bytes:
    """The min/max envelope of the audio (the window's range highlighted), as a small PNG."""
    from PIL import Image, ImageDraw

    sr = 8000
    wave = load_audio(path, sr)
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


def thumbnail(row: Any):
    s, e = row.locator.get("start"), row.locator.get("end")
    if getattr(row, "file_modality", None) == "video":  # the picture at that moment, not the whole track's envelope
        from ..video.frames import frame_jpeg
        return f"{row.id}.jpg", "image/jpeg", lambda: frame_jpeg(row.path, float(s or 0.0))
    return f"{row.id}.png", "image/png", lambda: waveform_png(row.path, s, e)


@functools.lru_cache(maxsize=2)  # the windows of one recording are sketched one after another
def _wave(path: str, mtime_ns: int) -> np.ndarray:
    return load_audio(path, SOUND_RATE)


def sketch(row: Any) -> np.ndarray:
    wave = _wave(row.path, os.stat(row.path).st_mtime_ns)
    start, end = float(row.locator.get("start", 0.0)), row.locator.get("end")
    return sound_sketch(wave[int(start * SOUND_RATE): None if end is None else int(float(end) * SOUND_RATE)])


AUDIO = register_modality(Modality(
    name="audio",
    extensions=lambda: EXTENSIONS,
    decode=decode,
    encoder=lambda space: space.audio,
    # A long query clip: the mean direction of its windows.
    encode_query=lambda enc, value: enc.encode_clip(value),
    describe=describe,
    thumbnail=thumbnail,
    metadata=media_metadata,
    missing_tower="this space has no audio tower (use a space with audio to index sound)",
    media_types={".flac": "audio/flac", ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/ogg",
                 ".wav": "audio/wav", ".aif": "audio/aiff", ".aiff": "audio/aiff"},
    sketch=sketch,
    likeness=sound_likeness,
))
