"""Frames of a video, sampled for what they show at a fraction of the cost of decoding every frame.

Key frames are decoded alone (the packets of the others are read but never decoded). Encoders put a key frame
at a cut and otherwise at a regular interval, so the stretch between two key frames is decoded (sampled every
`step` seconds) only where a cut may hide in it unmarked: when the two key frames' colours differ as shots do
(motion moves colours around, a cut changes them) and the second came at the regular interval, not early for a
cut. A talk, a still shot or a film whose cuts the encoder marked costs its key frames (and the stretch after
the last one, which has nothing to be compared with). A sample that looks like the one before it (its 16x16
picture within `SAME`) is not kept: it adds nothing for the scene merger but cost.

An unmarked cut often shows in the packets: the first frame of a new shot has nothing to be predicted from, so it
is coded as a picture of its own, and in a stretch that holds nothing else as large its packet stands far above
all the others. Such a packet is decoded alone, on the key frame before it (its references are missing, so the
picture is near, not exact). Where a stretch holds one such packet and its picture has the colours of the key frame ending
the stretch, not of the one starting it, the stretch is taken as cut there: that picture is the sample at the cut,
and the cut costs one frame, not the frames before it. (Should the key frame ending the stretch fall on a second
cut, the picture at the first cut still stands for the shot between; the scene merger tells them apart.)
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
JUMP = 3.0          # a stretch's largest packet, this many times any other of the stretch, may be its one cut
REFINE = 0.5        # ... the packets this many seconds after it aside (an encoder refines a cut's picture there)
JUMP_OF_KEY = 0.3   # ... if it is at least this share of the median key frame's packet: coded as a picture of its own
JUMP_STRETCH = 3000  # packets: a longer stretch is not read for a cut (bounded memory; it is decoded if looked at)


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
    cuts_from_packets: int = 0  # unmarked cuts found from a packet's size, without decoding the frames before it
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
    from PIL import Image

    rgb = img if img.mode == "RGB" else img.convert("RGB")
    # Box averages: a third of the cost of the default filter per sample (measured on 455x256 samples).
    at64 = rgb.resize((64, 64), Image.Resampling.BOX)
    px = np.asarray(at64.resize((SIGNATURE, SIGNATURE), Image.Resampling.BOX), np.uint8).reshape(-1, 3)
    small = np.asarray(at64, np.uint8).reshape(-1, 3) // (256 // BINS)
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
    # Frames flushed out of a decoder that reorders (B-frames) come without a time base; their pts are the stream's.
    base = frame.time_base or stream.time_base
    if frame.pts is not None and base:
        return max(0.0, float(frame.pts * base) - _start(stream))
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
        packets = _read_packets(src_factory)
        keys = packets.keys
        cadence = max((b - a for a, b in zip(keys, keys[1:])), default=None)
        # Slice threads only: frame threads hold frames back, and frames flushed out of them lose their times
        # when the decoder sees key frames alone.
        stream.codec_context.thread_type = "SLICE"
        refine = _Refiner(src_factory, info, max(step, spacing))
        prev: Sample | None = None   # the last key frame looked at
        kept: Sample | None = None   # the last sample yielded
        jumps: list[Sample] = []     # packets that may start a shot since `prev`, decoded alone
        try:
            for frame in _key_frames(c, stream, packets.jumps):
                if frame.pts in packets.jumps:
                    info.decoded += 1
                    jimg = _image(frame)
                    jumps.append(Sample(_time(frame, stream, 0), jimg, signature(jimg)))
                    continue
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
                    cut = _one_cut(jumps, prev, cur)
                    if cut is not None:
                        info.cuts_from_packets += 1
                        kept = cut
                        yield cut
                    else:
                        for s in refine.between(prev.t, cur.t, until=cur.signature):
                            if kept is None or differs(kept.signature, s.signature):
                                kept = s
                                yield s
                jumps = [j for j in jumps if j.t > t]  # a decoder that reorders gives a frame after the next key frame
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


@dataclass
class _Packets:
    keys: list[float]   # the key frames' times
    jumps: set[int]     # pts of the other packets that may start a shot (far above the others of their stretch)


def _read_packets(src_factory: Any) -> _Packets:
    """The key frames' times and the packets that may start a shot, from the packets alone (reading, no decoding).

    A stretch between two key frames has such a packet only where one packet stands far above all the others
    (`JUMP`; the few frames after it that refine its picture aside) and is not far below a key frame
    (`JUMP_OF_KEY`): one change as large as a cut and nothing else near it. Where motion or a second change makes
    other packets large, a cut may hide among them (measured: a cut between two shapes on white coded smaller
    than the motion before it), so no packet is named and the stretch is decoded."""
    keys: list[float] = []
    key_sizes: list[int] = []
    stretch: list[tuple[float, int, int]] = []   # (time, pts, size) of the packets since the last key frame
    found: list[tuple[int, int]] = []            # (pts, size)
    too_long = False

    def close() -> None:
        nonlocal too_long
        if stretch and not too_long:
            t, pts, size = max(stretch, key=lambda p: p[2])
            others = [p[2] for p in stretch if not t <= p[0] <= t + REFINE]
            if size >= JUMP * max(others, default=0):
                found.append((pts, size))
        stretch.clear()
        too_long = False

    try:
        with opened(src_factory()) as c:
            stream = picture_stream(c)
            for packet in c.demux(stream):
                if packet.pts is None or not packet.size:
                    continue
                t = float(packet.pts * packet.time_base)
                if packet.is_keyframe:
                    close()
                    keys.append(t)
                    key_sizes.append(packet.size)
                elif not too_long:
                    stretch.append((t, packet.pts, packet.size))
                    too_long = len(stretch) > JUMP_STRETCH
            # The stretch after the last key frame is not closed: with no key frame after it to check a picture
            # against, it is decoded where it is looked at, and a packet named there would be decoded for nothing.
    except Exception:  # the decoding pass says what is wrong with the file
        pass
    floor = JUMP_OF_KEY * float(np.median(key_sizes)) if key_sizes else float("inf")
    return _Packets(keys, {pts for pts, size in found if size >= floor})


def _one_cut(jumps: list[Sample], prev: Sample, cur: Sample) -> Sample | None:
    """The sample at the one cut between two key frames of other shots, where the packets show it: one packet that
    may start a shot, whose picture (decoded alone) has the later key frame's colours and not the earlier's.
    None where that is not so (no such packet, several, or a picture that does not match): the stretch is decoded."""
    inside = [j for j in jumps if prev.t < j.t < cur.t]
    if len(inside) != 1:
        return None
    cut = inside[0]
    if another_shot(cut.signature, cur.signature) or not another_shot(cut.signature, prev.signature):
        return None
    return cut


def _look_between(t0: float, t1: float, step: float, cadence: float | None) -> bool:
    """Is the stretch between two key frames (or the last one and the end) worth decoding? A key frame that comes
    before the encoder's regular interval (`cadence`, the longest gap) was put there for a cut, so the stretch
    before it is one shot; a stretch as long as the interval may hold a cut the encoder did not mark."""
    if t1 - t0 <= 1.5 * step:  # one sample more at most: the key frames stand for it
        return False
    return cadence is None or t1 - t0 >= 0.9 * cadence


def _key_frames(c: Any, stream: Any, also: set[int] | frozenset[int] = frozenset()) -> Iterator[Any]:
    """The key frames of a stream (and the packets whose pts are in `also`), decoded alone: only those packets
    reach the decoder (FFmpeg's own `skip_frame` is ignored by some decoders, VP9's among them), so the frames
    between cost only their reading."""
    for packet in c.demux(stream):
        if packet.size == 0 or not (packet.is_keyframe or packet.pts in also):
            continue
        try:
            decoded = packet.decode()
        except Exception:
            if packet.is_keyframe:
                raise
            continue  # without its references a decoder may refuse the frame: then its stretch is decoded
        for frame in decoded:
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
