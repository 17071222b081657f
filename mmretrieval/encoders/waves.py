"""Sound files to mono waveforms and fixed windows, without torch: what decoding and read-only paths need
(`audio.py` adds the tower)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DecodeError

MIN_SECONDS = 0.05  # shorter than this carries no usable sound


def load_audio(path: str | os.PathLike | Any, sample_rate: int) -> np.ndarray:
    """Decode an audio file (a path or a binary file object) to mono float32 at `sample_rate`.

    libsndfile (soundfile) reads WAV, FLAC, Ogg Vorbis/Opus, MP3, AIFF; what it cannot read (m4a/AAC, WebM,
    WMA, Ogg-FLAC, ...) goes through FFmpeg's decoders in PyAV. Channels are averaged and the result
    resampled (`resample`), as `librosa.load` does."""
    src = os.fspath(path) if isinstance(path, (str, os.PathLike)) else path
    try:
        wave, sr = _read_soundfile(src)
    except _Unreadable as first:
        if hasattr(src, "seek"):
            src.seek(0)
        try:
            wave, sr = _read_av(src)
        except _Unreadable as second:
            raise DecodeError(f"cannot decode audio: {second.reason or first.reason}") from None
    if wave.size and sr != sample_rate:
        wave = resample(wave, sr, sample_rate)
    return check_wave(wave, sample_rate)


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """`librosa.resample(wave, orig_sr=, target_sr=)` with its default (soxr's high quality, the length fixed to
    ceil(n * ratio)): the same samples, without librosa's import (over a second of a one-off audio query)."""
    if orig_sr == target_sr:
        return wave
    import soxr

    n = int(np.ceil(wave.shape[-1] * float(target_sr) / orig_sr))
    out = soxr.resample(wave, orig_sr, target_sr, quality="soxr_hq")
    out = out[:n] if out.shape[-1] >= n else np.pad(out, (0, n - out.shape[-1]))
    return np.asarray(out, dtype=wave.dtype)


class _Unreadable(Exception):
    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


def _read_soundfile(src: Any) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        with sf.SoundFile(src) as f:
            sr = f.samplerate
            data = f.read(dtype="float32", always_2d=True)
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        raise DecodeError(f"cannot read: {e.strerror or e}") from None
    except Exception as e:  # libsndfile's errors: unknown format, truncated data, ...
        raise _Unreadable(getattr(e, "error_string", "") or _first_line(e)) from None
    return data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0], int(sr)


def _read_av(src: Any) -> tuple[np.ndarray, int]:
    try:
        import av
    except ImportError:  # pragma: no cover - a declared dependency
        raise _Unreadable("") from None
    chunks: list[np.ndarray] = []
    try:
        with av.open(src, mode="r") as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise _Unreadable("the file holds no audio stream")
            if stream.codec_context is None:
                raise _Unreadable("unsupported audio encoding (no decoder for it)")
            sr = int(getattr(stream, "sample_rate", None) or stream.codec_context.sample_rate or 0)
            planar = av.AudioResampler(format="fltp")  # same rate and channels, float samples
            for frame in container.decode(stream):
                for f in planar.resample(frame):
                    chunks.append(f.to_ndarray().mean(axis=0, dtype=np.float32))
            for f in planar.resample(None):
                chunks.append(f.to_ndarray().mean(axis=0, dtype=np.float32))
    except _Unreadable:
        raise
    except Exception as e:  # FFmpeg's errors: invalid data, unknown codec, ...
        raise _Unreadable(getattr(e, "strerror", None) or _first_line(e)) from None
    if sr <= 0:
        raise _Unreadable("no sample rate in the audio stream")
    return (np.concatenate(chunks) if chunks else np.zeros(0, np.float32)), sr


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0][:200] if text else type(e).__name__)


def check_wave(wave: Any, sample_rate: int) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:  # (channels, samples) or (samples, channels)
        wave = wave.mean(axis=0 if wave.shape[0] < wave.shape[1] else 1)
    if wave.ndim != 1:
        raise DecodeError(f"audio must be 1-D samples, got shape {wave.shape}")
    if wave.size == 0:
        raise DecodeError("audio too short: no samples (the file has a header but no sound)")
    if wave.size < MIN_SECONDS * sample_rate:
        raise DecodeError(f"audio too short: {wave.size / sample_rate:.3f} s (minimum {MIN_SECONDS} s)")
    if not np.isfinite(wave).all():
        raise DecodeError("audio holds NaN or infinite samples")
    return wave


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    samples: np.ndarray

    def locator(self) -> dict[str, float]:
        return {"start": round(self.start, 3), "end": round(self.end, 3)}


def windows(wave: np.ndarray, sample_rate: int, window_s: float, hop_s: float) -> list[Window]:
    """Cut `wave` into windows of `window_s` seconds every `hop_s`; the last one ends at the end."""
    w = int(round(window_s * sample_rate))
    h = max(1, int(round(hop_s * sample_rate)))
    n = wave.size
    if n <= w:
        return [Window(0.0, n / sample_rate, wave)]
    starts = list(range(0, n - w + 1, h))
    if starts[-1] + w < n:
        starts.append(n - w)  # cover the tail with a full-length window
    return [Window(s / sample_rate, (s + w) / sample_rate, wave[s:s + w]) for s in starts]
