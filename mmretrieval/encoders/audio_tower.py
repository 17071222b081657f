"""Audio towers: waveform -> spectrogram front end -> network -> projection into the shared space.

Towers are built from a JSON-able config (``arch`` picks the class), like open_clip's model
configs, so a space folder can describe its tower without code.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import SpaceError
from .audio_front import FrontEnd


class LogMelFrontEnd(nn.Module):
    """Power STFT -> mel filterbank (librosa's, Slaney) -> log. Runs batched in torch."""

    def __init__(self, sample_rate: int, n_fft: int = 512, hop_length: int = 160, n_mels: int = 64,
                 fmin: float = 0.0, fmax: float | None = None) -> None:
        super().__init__()
        import librosa

        self.n_fft = n_fft
        self.hop_length = hop_length
        fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
        self.register_buffer("mel_fb", torch.from_numpy(fb.astype(np.float32)), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:  # [B, T] -> [B, 1, n_mels, frames]
        spec = torch.stft(wave.float(), self.n_fft, self.hop_length, window=self.window,
                          center=True, pad_mode="reflect", return_complex=True)
        power = spec.real ** 2 + spec.imag ** 2
        mel = torch.matmul(self.mel_fb, power)
        return torch.log(mel + 1e-6).unsqueeze(1)

    def as_data(self) -> FrontEnd:
        return FrontEnd(self.n_fft, self.hop_length, self.window.cpu().numpy().astype(np.float32),
                        self.mel_fb.cpu().numpy().astype(np.float32), 1e-6, False)


class ConvAudioTower(nn.Module):
    """A small CNN over log-mel frames with mean+max pooling over time and frequency."""

    def __init__(self, embed_dim: int, sample_rate: int, channels: list[int] | None = None,
                 n_fft: int = 512, hop_length: int = 160, n_mels: int = 64, **_: Any) -> None:
        super().__init__()
        channels = channels or [32, 64, 128]
        self.frontend = LogMelFrontEnd(sample_rate, n_fft, hop_length, n_mels)
        self.norm = nn.BatchNorm2d(1)
        layers: list[nn.Module] = []
        c_in = 1
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.proj = nn.Sequential(nn.Linear(2 * c_in, 2 * c_in), nn.ReLU(inplace=True), nn.Linear(2 * c_in, embed_dim))

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        return self.frontend(wave)

    def front_end(self) -> FrontEnd:
        return self.frontend.as_data()

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        x = self.body(self.norm(features))
        x = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return self.proj(x)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.embed(self.features(wave))


def _wav2clip(**kwargs: Any) -> nn.Module:
    from .wav2clip import Wav2CLIPTower

    return Wav2CLIPTower(**kwargs)


# A tower is ``forward(wave) = embed(features(wave))`` where it can: `features` (the signal processing: STFT,
# mel, log, standardising) stays in torch, `embed` (the network) is what ONNX Runtime runs (`encoders.onnx_runtime`);
# `front_end()` describes `features` as data, which a one-off query runs in numpy (`audio_front`).
AUDIO_ARCHS: dict[str, Callable[..., nn.Module]] = {"conv": ConvAudioTower, "wav2clip": _wav2clip}


def splits(tower: nn.Module) -> bool:
    """Does `tower` separate its signal front end (`features`) from its network (`embed`)?"""
    return callable(getattr(tower, "features", None)) and callable(getattr(tower, "embed", None))


def front_end(tower: nn.Module) -> FrontEnd | None:
    """`tower`'s front end as data (None: the tower does not describe it)."""
    describe = getattr(tower, "front_end", None)
    return describe() if splits(tower) and callable(describe) else None


def build_audio_tower(config: dict[str, Any]) -> nn.Module:
    arch = config.get("arch")
    if arch not in AUDIO_ARCHS:
        raise SpaceError(f"unknown audio tower arch {arch!r}; valid: {', '.join(sorted(AUDIO_ARCHS))}")
    kwargs = {k: v for k, v in config.items() if k not in ("arch", "window_s", "hop_s")}
    try:
        return AUDIO_ARCHS[arch](**kwargs)
    except (TypeError, ValueError) as e:
        raise SpaceError(f"bad audio tower config for arch {arch!r}: {e}") from None
