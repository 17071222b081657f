"""What an audio encoder does with its inputs before and after its tower, without torch: the same for the torch
tower (`audio.AudioEncoder`) and for its ONNX export a one-off query runs (`exported_audio`), so both give a
clip the same windows, lengths and pooling."""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from ..errors import UsageError
from .waves import check_wave, load_audio, resample, windows


class AudioInputs:
    """A mixin: the class also has `encode(list) -> [N, D]` (not declared here: it would shadow `base.Encoder`'s)."""

    sample_rate: int
    window_s: float
    hop_s: float
    min_samples: int

    def prepare(self, item: Any) -> np.ndarray:
        """A path, an ``(array, sample_rate)`` pair or a 1-D array at the tower's rate -> mono float32 samples."""
        if isinstance(item, (str, os.PathLike)):
            return load_audio(item, self.sample_rate)
        if isinstance(item, tuple) and len(item) == 2:
            wave, sr = item
            wave = np.asarray(wave, dtype=np.float32)
            if wave.ndim == 2:
                wave = check_wave(wave, int(sr))
            return check_wave(resample(wave, int(sr), self.sample_rate), self.sample_rate)
        if isinstance(item, np.ndarray):
            return check_wave(item, self.sample_rate)
        raise UsageError(f"audio inputs must be paths, (array, sample_rate) pairs or 1-D arrays at "
                         f"{self.sample_rate} Hz, got {type(item).__name__}")

    def fit_length(self, wave: np.ndarray) -> np.ndarray:
        """A clip shorter than the tower accepts is repeated up to that length. Repeating keeps what the
        clip sounds like (its spectrum and level); zeros would make the tower hear mostly silence."""
        need = self.min_samples
        if wave.size >= need:
            return wave
        return np.resize(wave, need)

    def same_lengths(self, batch: Sequence[Any]) -> tuple[list[np.ndarray], list[list[int]]]:
        """The batch's waves, fitted, and the positions of each group of equal length: they go through the tower
        together (padding would change what the tower hears)."""
        waves = [self.fit_length(self.prepare(b)) for b in batch]
        by_len: dict[int, list[int]] = {}
        for i, w in enumerate(waves):
            by_len.setdefault(w.size, []).append(i)
        return waves, list(by_len.values())

    def encode_pooled(self, window_waves: list[np.ndarray]) -> np.ndarray:
        """One vector for a whole clip: the normalised mean of its windows' vectors."""
        v = self.encode(list(window_waves)).mean(axis=0)
        return (v / np.linalg.norm(v)).astype(np.float32)

    def encode_clip(self, item: Any) -> np.ndarray:
        """A clip of any length (path, (array, sr) or array) as one vector, cut in the tower's windows."""
        wave = self.prepare(item)
        return self.encode_pooled([w.samples for w in windows(wave, self.sample_rate, self.window_s, self.hop_s)])
