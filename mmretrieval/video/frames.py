"""Frames of a video, sampled for what they show at a fraction of the cost of decoding every frame.

Key frames are decoded alone (the packets of the others are read but never decoded). Encoders put a key frame
at a cut and otherwise at a regular interval, so the stretch between two key frames is decoded (sampled every
`step` seconds) only where a cut may hide in it unmarked: when the two key frames' colours differ as shots do
(motion moves colours around, a cut changes them) and the second came at the regular interval, not early for a
cut. A talk, a still shot or a film whose cuts the encoder marked costs its key frames (and the stretch after
the last one, which has nothing to be compared with). A sample that looks like the one before it (its 16x16
picture within `SAME`) is not kept: it adds nothing for the scene merger but cost.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from ..errors import DecodeError
from .container import duration, opened, picture_stream, reason, rotation

SIDE = 256          # samples are scaled so their shorter side is this (the towers take 224 or less)
MAX_LONG_SIDE = 1024
SIGNATURE = 16      # a sample's signature: its RGB at 16x16, then its colour histogram
SAME = 0.02         # signatures this close (mean absolute difference, 0..1) show the same picture
CUT = 0.2           # colour histograms this far apart (half their L1 distance, 0..1) may be another shot
BINS = 4            # histogram bins per channel
STEP = 1.0          # seconds between samples where the picture changes between key frames
MIN_GAP = 0.5      # seconds: key frames closer than this to the last sample are not looked at
MAX_SAMPLES = 3000  # per video: a longer video is sampled more sparsely (bounded items and memory)


@dataclass
class Sample:
    t: float             # seconds from the start of the video
    image: Any           # PIL RGB image, upright, shorter side SIDE (or the frame's own, if smaller)
    signature: np.ndarray


@dataclass
class Sampling:
    """What sampling found besides the samples (read after the generator ends)."""

    duration: float | None = None
    key_frames: int = 0
    decoded: int = 0          # frames decoded in all, key frames included
    sparse_step: float = 0.0  # > 0: a long video sampled no more often than this many seconds
    last_t: float = 0.0       # the latest frame time decoded (the end, when the file states no duration)
    broken_at: float | None = None  # the picture could not be read past this time (a damaged or cut file)


def _image(frame: Any) -> Any:
    from PIL import Image

    w, h = frame.width, frame.height
    if w <= 0 or h <= 0:
        raise DecodeError("the video's frames have no size")
    s = min(1.0, SIDE / min(w, h), MAX_LONG_SIDE / max(w, h))
    tw, th = max(1, int(round(w * s))), max(1, int(round(h * s)))
    img: Image.Image = frame.reformat(width=tw, height=th, format="rgb24").to_image()
    turn = rotation(frame)
    return img.rotate(turn, expand=True) if turn else img


def signature(img: Any) -> np.ndarray:
    """The picture at 16x16 (what changes with motion), then its colour histogram (what changes at a cut)."""
    px = np.asarray(img.convert("RGB").resize((SIGNATURE, SIGNATURE)), np.uint8).reshape(-1, 3)
    small = np.asarray(img.convert("RGB").resize((64, 64)), np.uint8).reshape(-1, 3) // (256 // BINS)
    hist = np.bincount((small[:, 0] * BINS + small[:, 1]) * BINS + small[:, 2], minlength=BINS ** 3)
    return np.concatenate([px.reshape(-1) / 255.0, hist / hist.sum()]).astype(np.float32)


def differs(a: np.ndarray, b: np.ndarray) -> bool:
    """Not the same picture (a sample adds something for the scene merger)."""
    n = SIGNATURE * SIGNATURE * 3
    return float(np.abs(a[:n] - b[:n]).mean()) >= SAME


def another_shot(a: np.ndarray, b: np.ndarray) -> bool:
    """Colours too far apart for one shot: motion moves a picture's colours around, a cut changes them."""
    n = SIGNATURE * SIGNATURE * 3
    return 0.5 * float(np.abs(a[n:] - b[n:]).sum()) >= CUT


def _time(frame: Any, stream: Any, index: int) -> float:
    if frame.pts is not None and frame.time_base:
        return max(0.0, float(frame.pts * frame.time_base) - _start(stream))
    rate = float(stream.average_rate or stream.guessed_rate or 25)
    return index / rate


def _start(stream: Any) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0


def samples(src_factory: Any, info: Sampling, *, step: float = STEP, max_samples: int = MAX_SAMPLES) -> Iterator[Sample]:
    """The samples of a video in time order. `src_factory()` gives a fresh source each call (the stretches
    between changed key frames are read through a second handle)."""
    with opened(src_factory()) as c:
        stream = picture_stream(c)
        if stream is None:
            raise DecodeError("no video stream")
        info.duration = duration(c, stream)
        spacing = 0.0
        if info.duration and info.duration / max_samples > step:
            spacing = info.sparse_step = info.duration / max_samples
        keys = _key_times(src_factory)
        cadence = max((b - a for a, b in zip(keys, keys[1:])), default=None)
        # Slice threads only: frame threads hold frames back, and frames flushed out of them lose their times
        # when the decoder sees key frames alone.
        stream.codec_context.thread_type = "SLICE"
        refine = _Refiner(src_factory, info, max(step, spacing))
        prev: Sample | None = None   # the last key frame looked at
        kept: Sample | None = None   # the last sample yielded
        try:
            for frame in _key_frames(c, stream):
                info.key_frames += 1
                info.decoded += 1
                t = _time(frame, stream, info.key_frames - 1)
                info.last_t = max(info.last_t, t)
                if kept is not None and t - kept.t < max(spacing, MIN_GAP):
                    continue  # denser than the sampling allows (an all-intra video, a very long one)
                img = _image(frame)
                cur = Sample(t, img, signature(img))
                if prev is not None and _look_between(prev.t, cur.t, step, cadence) \
                        and another_shot(prev.signature, cur.signature):
                    for s in refine.between(prev.t, cur.t, until=cur.signature):
                        if kept is None or differs(kept.signature, s.signature):
                            kept = s
                            yield s
                if kept is None or differs(kept.signature, cur.signature):
                    kept = cur
                    yield cur
                prev = cur
            # After the last key frame nothing says whether the picture changes: its stretch is looked at.
            end = info.duration if info.duration is not None else float("inf")
            if prev is not None and _look_between(prev.t, end, step, cadence):
                for s in refine.between(prev.t, float("inf")):  # to the last frame, whatever the header says
                    if kept is None or differs(kept.signature, s.signature):
                        kept = s
                        yield s
        except DecodeError:
            raise
        except Exception as e:
            if kept is None:
                raise DecodeError(f"cannot decode the video: {reason(e)}") from None
            info.broken_at = info.last_t  # damaged or truncated: what was read is indexed
            info.duration = info.last_t
        if kept is None:
            raise DecodeError("no picture could be decoded from the video stream")
        if info.duration is not None and info.last_t > info.duration:  # frames past the header's duration
            info.duration = info.last_t


def _key_times(src_factory: Any) -> list[float]:
    """The times of the key frames, from the packets alone (reading, no decoding)."""
    out: list[float] = []
    try:
        with opened(src_factory()) as c:
            stream = picture_stream(c)
            for packet in c.demux(stream):
                if packet.is_keyframe and packet.pts is not None and packet.size:
                    out.append(float(packet.pts * packet.time_base))
    except Exception:  # the decoding pass says what is wrong with the file
        pass
    return out


def _look_between(t0: float, t1: float, step: float, cadence: float | None) -> bool:
    """Is the stretch between two key frames (or the last one and the end) worth decoding? A key frame that comes
    before the encoder's regular interval (`cadence`, the longest gap) was put there for a cut, so the stretch
    before it is one shot; a stretch as long as the interval may hold a cut the encoder did not mark."""
    if t1 - t0 <= 1.5 * step:  # one sample more at most: the key frames stand for it
        return False
    return cadence is None or t1 - t0 >= 0.9 * cadence


def _key_frames(c: Any, stream: Any) -> Iterator[Any]:
    """The key frames of a stream, decoded alone: only key-frame packets reach the decoder (FFmpeg's own
    `skip_frame` is ignored by some decoders, VP9's among them), so the frames between cost only their reading."""
    for packet in c.demux(stream):
        if packet.size == 0 or not packet.is_keyframe:
            continue
        for frame in packet.decode():
            if frame.pts is None and packet.pts is not None:
                frame.pts, frame.time_base = packet.pts, packet.time_base
            yield frame
    for frame in stream.decode(None):  # frames the decoder still holds (reordering delay)
        if frame.pts is not None:
            yield frame


class _Refiner:
    """Decodes every frame of a stretch between two key frames (from the first), keeping one every `step`.
    Each stretch opens the file again: a container seeked again after a partial read gave no frames (WebM)."""

    def __init__(self, src_factory: Any, info: Sampling, step: float) -> None:
        self.src_factory, self.info, self.step = src_factory, info, step

    def between(self, t0: float, t1: float, until: np.ndarray | None = None) -> Iterator[Sample]:
        """The samples from `t0` to `t1`. `until`: the signature of the key frame at `t1`; decoding stops at the
        first sample of its shot, since the rest of the stretch is that shot and the key frame stands for it
        (a stretch with cuts the encoder did not mark: about half of it is decoded, not all)."""
        try:
            with opened(self.src_factory()) as c:
                stream = picture_stream(c)
                stream.codec_context.thread_type = "AUTO"
                # Frames no other frame refers to (B-frames) are not decoded: a sample a second needs none of them,
                # and skipping them changes no other frame (measured: 1.6x faster on x264's defaults).
                stream.codec_context.skip_frame = "NONREF"
                start = _start(stream)
                if t0 > 0:
                    c.seek(int((t0 + start) / stream.time_base), stream=stream, backward=True, any_frame=False)
                want = t0 + self.step
                for i, frame in enumerate(c.decode(stream)):
                    self.info.decoded += 1
                    if frame.pts is None:
                        continue
                    t = _time(frame, stream, i)
                    if t >= t1 - 1e-3:
                        return
                    self.info.last_t = max(self.info.last_t, t)
                    if t + 1e-3 >= want:
                        img = _image(frame)
                        sample = Sample(t, img, signature(img))
                        yield sample
                        if until is not None and not another_shot(sample.signature, until):
                            return
                        want = t + self.step
        except DecodeError:
            return
        except Exception:  # the stretch stays unsampled: its key frames still stand for it
            return


def frame_at(src: Any, t: float) -> Any:
    """The upright frame shown at `t` seconds (PIL RGB, shorter side SIDE): for a scene's thumbnail."""
    with opened(src) as c:
        stream = picture_stream(c)
        if stream is None:
            raise DecodeError("no video stream")
        stream.codec_context.thread_type = "AUTO"
        start = _start(stream)
        try:
            c.seek(max(0, int((t + start) / stream.time_base)), stream=stream, backward=True, any_frame=False)
        except Exception:
            c.seek(0)
        last = None
        for i, frame in enumerate(c.decode(stream)):
            last = frame
            if _time(frame, stream, i) + 1e-3 >= t:
                break
        if last is None:
            raise DecodeError(f"no frame at {t:.1f} s")
        return _image(last)


def frame_jpeg(path: str, t: float, side: int = 256) -> bytes:
    """A JPEG (no larger than `side`) of the frame shown at `t`: a video moment's thumbnail."""
    import io

    img = frame_at(os.fspath(path), t)
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=85)
    return buf.getvalue()
