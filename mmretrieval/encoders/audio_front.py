"""An audio tower's signal front end as data, run in numpy: what a one-off audio query computes without torch.

A tower (`audio_tower`) splits into its front end (`features`: STFT, mel, log, standardising) and its network
(`embed`, what ONNX Runtime runs). Every front end here is the same few steps, so a tower describes its own
(`front_end()`: its window and mel filterbank as arrays, which numbers it adds before the log, whether it
standardises each clip) and this module reproduces torch's `stft(center=True, pad_mode="reflect")`, power,
filterbank, log and per-clip standardising in numpy (float64 FFT, float32 out: torch's fp32 features to ~1e-5,
checked against the torch front end before a passport names it, `space.towers`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UsageError


@dataclass(frozen=True)
class FrontEnd:
    n_fft: int
    hop_length: int
    window: np.ndarray           # [n_fft] float32
    mel: np.ndarray | None       # [n_mels, n_fft // 2 + 1] float32; None: the power spectrogram itself
    eps: float                   # added before the log
    standardise: bool            # each clip to mean 0, std 1 (torch's unbiased std, + 1e-9)

    def __call__(self, waves: np.ndarray) -> np.ndarray:
        """``[B, T]`` float32 waveforms -> ``[B, 1, bins, frames]`` float32 features, as the tower's `features`."""
        x = np.asarray(waves, dtype=np.float32)
        if x.ndim != 2:
            raise UsageError(f"front end input must be [batch, samples], got shape {x.shape}")
        pad = self.n_fft // 2
        if x.shape[1] <= pad:
            raise UsageError(f"audio of {x.shape[1]} samples is shorter than the front end's reflect padding")
        x = np.pad(x, ((0, 0), (pad, pad)), mode="reflect")
        frames = 1 + (x.shape[1] - self.n_fft) // self.hop_length
        idx = np.arange(self.n_fft)[None, :] + self.hop_length * np.arange(frames)[:, None]
        spec = np.fft.rfft(x[:, idx].astype(np.float64) * self.window.astype(np.float64), axis=-1)
        power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32).transpose(0, 2, 1)  # [B, bins, frames]
        if self.mel is not None:
            power = np.matmul(self.mel, power)
        out = np.log(power + np.float32(self.eps))[:, None]
        if self.standardise:
            flat = out.reshape(len(out), -1).astype(np.float64)
            mean = flat.mean(axis=1)
            std = flat.std(axis=1, ddof=1)
            out = ((out - mean[:, None, None, None]) / (std[:, None, None, None] + 1e-9)).astype(np.float32)
        return out.astype(np.float32, copy=False)

    def save(self, path: str | os.PathLike) -> None:
        arrays = {"window": self.window, "n_fft": np.int64(self.n_fft), "hop_length": np.int64(self.hop_length),
                  "eps": np.float64(self.eps), "standardise": np.bool_(self.standardise)}
        if self.mel is not None:
            arrays["mel"] = self.mel
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FrontEnd":
        with np.load(Path(path), allow_pickle=False) as z:
            return cls(int(z["n_fft"]), int(z["hop_length"]), z["window"].astype(np.float32),
                       z["mel"].astype(np.float32) if "mel" in z.files else None, float(z["eps"]),
                       bool(z["standardise"]))
