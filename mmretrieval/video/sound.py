"""A video's audio track streamed into the audio tower's windows (never the whole track in memory): channels
averaged and resampled with soxr as sound files are (`encoders.waves`), so a clip of the same sound matches."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from ..encoders.waves import Window
from .container import opened, reason

MAX_WINDOWS = 3000   # per video: a longer track is windowed more sparsely (bounded items)
SILENT = 1e-4        # a window whose peak is below this is digital silence: not indexed


@dataclass
class Listening:
    """What streaming found besides the windows (read after the generator ends)."""

    windows: int = 0
    silent: int = 0
    hop: float = 0.0
    failed_at: float | None = None   # seconds into the track where decoding failed
    failure: str = ""
    capped: bool = False


def windows(src: Any, sample_rate: int, window_s: float, hop_s: float, duration: float | None,
            info: Listening, max_windows: int = MAX_WINDOWS) -> Iterator[Window]:
    import soxr

    w = int(round(window_s * sample_rate))
    hop = max(hop_s, (duration or 0) / max_windows)
    info.hop = hop
    h = max(1, int(round(hop * sample_rate)))
    buf = np.zeros(0, np.float32)
    offset = 0    # samples (at sample_rate) dropped from the front of buf
    pos = 0       # the next window's start, in samples
    total = 0

    last_end: int | None = None

    def ready(final: bool) -> Iterator[Window]:
        nonlocal buf, offset, pos, last_end
        end = offset + buf.size
        while pos + w <= end and not info.capped:
            yield from emit(pos, pos + w)
            last_end, pos = pos + w, pos + h
        if final and not info.capped:
            if last_end is None and end > 0:
                yield from emit(0, end)                   # shorter than one window: one window
            elif last_end is not None and last_end < end:
                yield from emit(max(0, end - w), end)     # the tail, as a full window ending at the end
        keep_from = max(offset, min(pos, end - w))        # what a later window (or the tail) may still need
        buf, offset = buf[keep_from - offset:], keep_from

    def emit(a: int, b: int) -> Iterator[Window]:
        seg = buf[a - offset:b - offset]
        if info.windows + info.silent >= max_windows:
            info.capped = True
            return
        if seg.size == 0:
            return
        if float(np.abs(seg).max()) < SILENT:
            info.silent += 1
            return
        info.windows += 1
        yield Window(a / sample_rate, b / sample_rate, seg.copy())

    with opened(src) as c:
        stream = next((s for s in c.streams.audio if s.codec_context is not None), None)
        if stream is None:
            return
        rate = int(stream.codec_context.sample_rate or stream.sample_rate or 0)
        if rate <= 0:
            info.failure, info.failed_at = "no sample rate in the audio stream", 0.0
            return
        resampler = None if rate == sample_rate else soxr.ResampleStream(rate, sample_rate, 1, dtype="float32")
        import av

        planar = av.AudioResampler(format="fltp")  # float samples, channels apart, the stream's own rate
        try:
            for frame in c.decode(stream):
                for f in planar.resample(frame):
                    mono = f.to_ndarray().mean(axis=0, dtype=np.float32)
                    total += mono.size
                    out = resampler.resample_chunk(mono) if resampler is not None else mono
                    buf = np.concatenate([buf, out]) if buf.size else out
                yield from ready(False)
                if info.capped:
                    return
        except Exception as e:  # a broken stream: the sound before the failure is indexed
            info.failure, info.failed_at = reason(e), total / rate
        if resampler is not None:
            tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            buf = np.concatenate([buf, tail]) if tail.size else buf
        yield from ready(True)
