"""Audio: decoded mono at the tower's rate (`audio_inputs`) -> windows -> audio tower -> shared space."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from ..errors import WeightsMismatchError
from .audio_tower import build_audio_tower, splits
from .base import Encoder

if TYPE_CHECKING:  # encoders do not import the space layer; the space builds them
    from ..space.spec import AudioSpec

from .audio_inputs import AudioInputs  # decoding, windows and pooling, without torch
from . import torch_gate


class AudioEncoder(AudioInputs, Encoder):
    """Encodes 1-D waveforms at the tower's sample rate (or ``(array, sr)`` pairs, or file paths)."""

    modality = "audio"

    def __init__(self, tower: torch.nn.Module, spec: AudioSpec, dim: int, device: torch.device,
                 dtype: torch.dtype = torch.float32,
                 runner: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        """`runner`: the tower's network under another runtime (int8, `encoders.onnx_runtime`): the front
        end (`tower.features`) runs here in fp32, its output goes to the runner."""
        super().__init__(dim, device)
        self.tower = tower
        self.runner = runner
        # bf16 and fp16 run under autocast: the spectrogram front end (`features`) stays fp32, convolutions and
        # linears go bf16/fp16 (bf16: 1.9x on the Wav2CLIP tower where the CPU has native bf16, cosine 0.99999).
        self.dtype = dtype
        self.spec = spec
        self.sample_rate = spec.sample_rate
        self.window_s, self.hop_s = spec.window_s, spec.hop_s  # how files are cut into items (`modalities.audio`)
        self._min_samples: int | None = None

    @property
    def min_samples(self) -> int:
        """The shortest input the tower accepts, found once by trying (towers do not declare it: their
        pooling stages decide it)."""
        if self._min_samples is None:
            self._min_samples = _shortest_accepted(self.tower, self.device,
                                                   int(round(self.spec.window_s * self.sample_rate)))
        return self._min_samples

    @classmethod
    def from_weights(cls, path: str | os.PathLike, spec: AudioSpec, dim: int, device: torch.device,
                     dtype: torch.dtype = torch.float32) -> "AudioEncoder":
        """The tower `spec.config` describes, with the weights in `path` (resolved by the space)."""
        tower = build_audio_tower({**spec.config, "embed_dim": spec.config.get("embed_dim", dim)})
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if hasattr(tower, "select_state"):  # published checkpoints may carry more than the tower
            state = tower.select_state(state)
        try:
            tower.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise WeightsMismatchError(f"audio tower weights {path} do not fit the tower config "
                                       f"{spec.config}: {str(e).splitlines()[0][:300]}") from None
        tower.eval().to(device)
        if device.type == "cpu":
            # oneDNN convolutions run faster on channels-last weights (Wav2CLIP: 1.4x under bf16, 1.2x in fp32)
            tower.to(memory_format=torch.channels_last)
        return cls(tower, spec, dim, device, dtype)

    def calibration_features(self, seed: int = 0, batch: int = 4) -> list[np.ndarray]:
        """`tower.features` of `calibration_waves` at the tower's window length, in batches."""
        waves = calibration_waves(self.sample_rate, int(round(self.spec.window_s * self.sample_rate)), seed=seed)
        with torch_gate.forward():
            return [self.tower.features(torch.from_numpy(waves[i:i + batch]).to(self.device)).float().cpu().numpy()
                    for i in range(0, len(waves), batch)]

    def _encode_batch(self, batch: list[Any]) -> torch.Tensor:
        waves, groups = self.same_lengths(batch)
        out = torch.empty((len(waves), self.dim))
        for idx in groups:
            x = torch.from_numpy(np.stack([waves[i] for i in idx])).to(self.device)
            if self.runner is not None:
                out[idx] = torch.from_numpy(self.runner(self.tower.features(x).float().cpu().numpy()))
                continue
            if splits(self.tower):  # the signal front end in fp32: a mel power can pass fp16's range (65504)
                x, net = self.tower.features(x), self.tower.embed
            else:
                net = self.tower
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
                out[idx] = net(x).float().cpu()
        return out


def calibration_waves(sample_rate: int, samples: int, n: int = 16, seed: int = 0) -> np.ndarray:
    """`n` synthetic clips spanning what an audio tower hears, for static int8's activation scales: tones and
    chords, white and brown noise, chirps, clicks, speech-like bursts, near-silence, from -60 to 0 dBFS.
    Synthetic, so any space can calibrate without data; the scales only need to cover real ranges."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / sample_rate
    nyq = sample_rate / 2
    out = np.empty((n, samples), np.float32)
    for i in range(n):
        kind = i % 8
        if kind == 0:  # a chord of harmonics
            f0 = rng.uniform(60, 800)
            x = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) / h for h in range(1, 6) if f0 * h < nyq)
        elif kind == 1:
            x = rng.standard_normal(samples)
        elif kind == 2:  # brown noise: most energy low
            x = np.cumsum(rng.standard_normal(samples))
            x -= np.convolve(x, np.ones(512) / 512, mode="same")
        elif kind == 3:  # a chirp across the band
            f = np.geomspace(50, 0.9 * nyq, samples)
            x = np.sin(2 * np.pi * np.cumsum(f) / sample_rate)
        elif kind == 4:  # clicks
            x = np.zeros(samples)
            x[rng.integers(0, samples, 40)] = rng.uniform(-1, 1, 40)
        elif kind == 5:  # bursts of a modulated tone with noise: speech-like envelopes
            env = np.clip(np.sin(2 * np.pi * rng.uniform(2, 6) * t), 0, None) ** 2
            x = env * (np.sin(2 * np.pi * rng.uniform(100, 300) * t * (1 + 0.1 * np.sin(2 * np.pi * 3 * t)))
                       + 0.3 * rng.standard_normal(samples))
        elif kind == 6:  # near-silence
            x = 1e-3 * rng.standard_normal(samples)
        else:  # a tone over noise
            x = np.sin(2 * np.pi * rng.uniform(200, 4000) * t) + 0.5 * rng.standard_normal(samples)
        x = np.asarray(x, np.float64)
        peak = np.abs(x).max() or 1.0
        out[i] = (x / peak * 10 ** (rng.uniform(-60, 0) / 20)).astype(np.float32)
    return out


def _shortest_accepted(tower: torch.nn.Module, device: torch.device, longest: int) -> int:
    """Binary search for the fewest samples `tower` runs on (the window length always runs)."""
    rng = np.random.default_rng(0)

    def runs(n: int) -> bool:
        x = torch.from_numpy(rng.standard_normal((1, n)).astype(np.float32)).to(device)
        try:
            with torch_gate.forward():
                tower(x)
            return True
        except RuntimeError:  # "output size is too small", "padding size should be less than ..."
            return False

    lo, hi = 1, max(2, longest)
    if runs(lo):
        return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if runs(mid):
            hi = mid
        else:
            lo = mid
    return hi
