"""Opening a video with PyAV: its streams, duration and rotation, with FFmpeg's errors as short reasons."""
from __future__ import annotations

import io
import os
from contextlib import contextmanager
from typing import Any, Iterator

from ..errors import DecodeError


def source(data: bytes | None, path: str) -> Any:
    """What PyAV opens: the bytes already read, else the path (a file too large to hold)."""
    return io.BytesIO(data) if data is not None else os.fspath(path)


def reason(e: BaseException) -> str:
    """FFmpeg's error as a user reads it."""
    text = getattr(e, "strerror", None) or str(e).strip() or type(e).__name__
    return text.splitlines()[0][:200]


@contextmanager
def opened(src: Any) -> Iterator[Any]:
    """An open container (raises DecodeError with FFmpeg's reason when it cannot be opened)."""
    import av

    # PyAV leaves FFmpeg's log alone (silent) by default; never turn it on here: its callback needs the GIL
    # from FFmpeg's decoding threads and deadlocks threaded decoding.
    if hasattr(src, "seek"):
        src.seek(0)
    try:
        c = av.open(src, mode="r", metadata_errors="ignore")
    except Exception as e:
        raise DecodeError(f"cannot open the video: {reason(e)}") from None
    try:
        yield c
    finally:
        c.close()


def picture_stream(c: Any) -> Any | None:
    """The video stream that moves: not cover art (an attached picture), one FFmpeg can decode; else None."""
    import av

    for s in c.streams.video:
        disp = getattr(s, "disposition", 0)
        if disp & getattr(av.stream.Disposition, "attached_pic", 1 << 10):
            continue
        if s.codec_context is None:
            continue
        return s
    return None


def undecodable_picture(c: Any) -> str | None:
    """Why the file's picture stream cannot be decoded (its codec is missing from this FFmpeg), or None."""
    for s in c.streams.video:
        if s.codec_context is None:
            return "this FFmpeg build has no decoder for its video codec"
    return None


def duration(c: Any, stream: Any | None = None) -> float | None:
    """Seconds, from the stream else the container; None when neither says (a live recording, some WebM)."""
    if stream is not None and stream.duration and stream.time_base:
        d = float(stream.duration * stream.time_base)
        if d > 0:
            return d
    if c.duration and c.duration > 0:
        return c.duration / 1_000_000
    return None


def rotation(frame: Any) -> int:
    """Degrees a frame must turn (counter-clockwise) to stand upright, from its display matrix."""
    try:
        r = int(round(getattr(frame, "rotation", 0) or 0)) % 360
    except (TypeError, ValueError):
        return 0
    return r if r in (90, 180, 270) else 0
