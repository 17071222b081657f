"""Videos made for the tests with PyAV: scenes of known shapes and colours cut at known times, tones at known
times, subtitle tracks inside the container or beside it, and broken variants."""
from __future__ import annotations

import fractions
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import av
import numpy as np
from PIL import Image

from mmretrieval.synth import shape_image, tone


@dataclass
class Scene:
    seconds: float
    color: str = "red"
    shape: str = "circle"
    drift: float = 0.04   # the shape wanders a little (real footage is never still)

    def frame(self, t: float, size: tuple[int, int]) -> Image.Image:
        w, h = size
        side = min(w, h)
        img = shape_image(self.color, self.shape, size=side,
                          center=(0.5 + self.drift * np.sin(t), 0.5 + self.drift * np.cos(1.3 * t)))
        canvas = Image.new("RGB", (w, h), (255, 255, 255))
        canvas.paste(img, ((w - side) // 2, (h - side) // 2))
        return canvas


@dataclass
class Sound:
    start: float
    seconds: float
    pitch: float = 660.0
    contour: str = "steady"


@dataclass
class VideoSpec:
    scenes: list[Scene]
    size: tuple[int, int] = (160, 120)
    fps: int = 10
    codec: str = "libx264"
    keyint: int = 250              # frames between key frames
    scenecut: bool = False         # let x264 put key frames at cuts (it does by default)
    bframes: int = 0               # x264's B-frames (its presets other than ultrafast use 3): frames come out reordered
    sounds: list[Sound] = field(default_factory=list)
    audio: bool | None = None      # None: a track when there are sounds
    sample_rate: int = 16000
    subtitles: list[tuple[float, float, str]] = field(default_factory=list)  # inside the container (MKV/WebM)
    frame_fn: Callable[[float], Image.Image] | None = None
    tags: dict[str, str] = field(default_factory=dict)   # container metadata (creation_time, title, comment)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.scenes)

    def cuts(self) -> list[float]:
        return list(np.cumsum([s.seconds for s in self.scenes])[:-1])

    def scene_at(self, t: float) -> Scene:
        for s, end in zip(self.scenes, np.cumsum([s.seconds for s in self.scenes])):
            if t < end:
                return s
        return self.scenes[-1]


def textured(shots: list[tuple[float, tuple[int, int, int], int]], size: tuple[int, int] = (160, 120),
             fps: int = 25, keyint: int = 250) -> VideoSpec:
    """Shots of (seconds, tint, seed) filling the frame with a random pattern of that tint that pans slowly: as
    footage does, a cut changes every part of the picture, so its frame is coded as a picture of its own."""
    ends = np.cumsum([s[0] for s in shots])
    pictures = []
    for _, tint, seed in shots:
        grid = np.random.default_rng(seed).uniform(-40, 40, (12, 16, 3))
        pictures.append(np.asarray(Image.fromarray(np.uint8(np.clip(np.array(tint) + grid, 0, 255)))
                                   .resize((size[0] * 2, size[1] * 2), Image.BILINEAR)))

    def frame(t: float) -> Image.Image:
        i = min(int(np.searchsorted(ends, t, side="right")), len(shots) - 1)
        dx = int(t * 3) % size[0]
        return Image.fromarray(pictures[i][10:10 + size[1], dx:dx + size[0]].copy())

    return VideoSpec([Scene(s[0]) for s in shots], size=size, fps=fps, keyint=keyint, frame_fn=frame)


def write_video(path: Path, spec: VideoSpec) -> Path:
    fmt = {".mkv": "matroska", ".webm": "webm", ".mp4": "mp4", ".mov": "mov"}[path.suffix]
    tmp_subs = None
    with av.open(str(path), "w", format=fmt) as out:
        out.metadata.update(spec.tags)
        v = out.add_stream(spec.codec, rate=spec.fps)
        v.width, v.height = spec.size
        v.pix_fmt = "yuv420p"
        if spec.codec == "libx264":
            v.options = {"x264-params": f"keyint={spec.keyint}:min-keyint={min(spec.keyint, 25)}"
                                        f":scenecut={40 if spec.scenecut else 0}:bframes={spec.bframes}", "preset": "ultrafast"}
        elif spec.codec.startswith("libvpx"):
            v.options = {"g": str(spec.keyint), "deadline": "realtime", "cpu-used": "8"}
        a = None
        if spec.audio or (spec.audio is None and spec.sounds):
            a = out.add_stream("aac" if fmt in ("mp4", "mov") else "libopus", rate=48000 if fmt == "webm" else spec.sample_rate)
            a.layout = "mono"
        s_in = s_stream = None
        if spec.subtitles:
            tmp_subs = path.with_suffix(".tmp.srt" if fmt != "webm" else ".tmp.vtt")
            tmp_subs.write_text(_srt(spec.subtitles) if fmt != "webm" else _vtt(spec.subtitles), encoding="utf-8")
            s_in = av.open(str(tmp_subs))
            s_stream = out.add_stream_from_template(s_in.streams.subtitles[0])
            s_stream.metadata["language"] = "eng"
        n = int(round(spec.seconds * spec.fps))
        for i in range(n):
            t = i / spec.fps
            img = spec.frame_fn(t) if spec.frame_fn else spec.scene_at(t).frame(t, spec.size)
            for p in v.encode(av.VideoFrame.from_image(img)):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        if a is not None:
            sr = a.rate
            wave = np.zeros(int(spec.seconds * sr), np.float32)
            for snd in spec.sounds:
                x = tone(snd.pitch, snd.seconds, sr=sr, contour=snd.contour)
                i0 = int(snd.start * sr)
                wave[i0:i0 + x.size] += x[:max(0, wave.size - i0)]
            if not spec.sounds:
                wave += 0.05 * np.random.default_rng(0).standard_normal(wave.size).astype(np.float32)
            step = 1024
            for i0 in range(0, wave.size, step):
                chunk = wave[i0:i0 + step]
                fr = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
                fr.sample_rate = sr
                fr.pts = i0
                fr.time_base = fractions.Fraction(1, sr)
                for p in a.encode(fr):
                    out.mux(p)
            for p in a.encode():
                out.mux(p)
        if s_in is not None:
            for p in s_in.demux(s_in.streams.subtitles[0]):
                if p.dts is None:
                    continue
                p.stream = s_stream
                out.mux(p)
            s_in.close()
    if tmp_subs is not None:
        tmp_subs.unlink()
    return path


def _stamp(t: float, sep: str = ",") -> str:
    h, rest = divmod(t, 3600)
    m, s = divmod(rest, 60)
    return f"{int(h):02d}:{int(m):02d}:{int(s):02d}{sep}{int(round((s % 1) * 1000)):03d}"


def _srt(cues: list[tuple[float, float, str]]) -> str:
    return "\n".join(f"{i + 1}\n{_stamp(a)} --> {_stamp(b)}\n{text}\n" for i, (a, b, text) in enumerate(cues))


def _vtt(cues: list[tuple[float, float, str]]) -> str:
    return "WEBVTT\n\n" + "\n".join(f"{_stamp(a, '.')} --> {_stamp(b, '.')}\n{text}\n" for a, b, text in cues)


def srt_text(cues: list[tuple[float, float, str]]) -> str:
    return _srt(cues)


def key_frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [float(p.pts * p.time_base) for p in c.demux(s) if p.is_keyframe and p.pts is not None]


def frame_at(path: Path, t: float) -> Image.Image:
    """The frame shown at t, decoded plainly (every frame): the test's own reference."""
    with av.open(str(path)) as c:
        best = None
        for f in c.decode(video=0):
            if f.time is not None and f.time <= t + 1e-6:
                best = f
            else:
                break
        return best.to_image()


def rotated_copy(src: Path, dst: Path) -> Path:
    """A copy of an MP4 whose track matrix says: turn 90° clockwise to show it (a phone held upright).
    PyAV cannot write a display matrix, so the `tkhd` box's matrix is patched in place."""
    import struct

    b = bytearray(src.read_bytes())
    i = b.find(b"tkhd")
    assert i > 0 and b[i + 4] == 0, "version-0 tkhd expected"
    b[i + 44:i + 80] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    dst.write_bytes(bytes(b))
    return dst
