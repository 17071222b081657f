"""A Wav2CLIP-compatible audio tower (Wu et al., 2022; MIT licence), without the `wav2clip` package.

Wav2CLIP distilled a ResNet-18 over a log power spectrogram (16 kHz mono, n_fft 512, hop 353) plus an
MLP (512→512→512) into OpenAI's CLIP ViT-B/32 space. This module has the same parameter names and
shapes, so the published checkpoint (keys ``audio_encoder.*`` and ``audio_transform.*``) loads as-is.

One deliberate difference: the reference standardises the log spectrogram with the mean and std of the
whole *batch*, so an embedding depends on what else is in the batch. Here each clip is standardised on
its own, which equals the reference embedding a clip alone (as its ``embed_audio`` does per file).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from .audio_front import FrontEnd

N_FFT, HOP = 512, 353


class PowerSpectrogram(nn.Module):
    """torchaudio.transforms.Spectrogram's defaults: periodic Hann window of n_fft, centred with reflect
    padding, one-sided, power 2, not normalised. The window is a buffer (it is in the checkpoint)."""

    def __init__(self, n_fft: int = N_FFT, hop_length: int = HOP) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., T] -> [..., n_fft // 2 + 1, frames]
        shape = x.shape
        spec = torch.stft(x.reshape(-1, shape[-1]), self.n_fft, self.hop_length, win_length=self.n_fft,
                          window=self.window, center=True, pad_mode="reflect", normalized=False, onesided=True,
                          return_complex=True)
        power = spec.real ** 2 + spec.imag ** 2
        return power.reshape(*shape[:-1], *power.shape[-2:])


class Wav2CLIPEncoder(ResNet):
    """ResNet-18 on a one-channel spectrogram; ``conv1 … layer4, avgpool`` as in torchvision and Wav2CLIP."""

    def __init__(self) -> None:
        super().__init__(BasicBlock, [2, 2, 2, 2])
        self.spectrogram = PowerSpectrogram()
        self.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        del self.fc  # Wav2CLIP has no classifier head

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """The standardised log power spectrogram ``[B, 1, 257, frames]``."""
        x = torch.log(self.spectrogram(wave.unsqueeze(1)) + 1e-7)
        dims = tuple(range(1, x.ndim))
        return (x - x.mean(dim=dims, keepdim=True)) / (x.std(dim=dims, keepdim=True) + 1e-9)

    def front_end(self) -> FrontEnd:
        s = self.spectrogram
        return FrontEnd(s.n_fft, s.hop_length, s.window.detach().cpu().numpy().astype(np.float32), None, 1e-7, True)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.features(wave))


class _MLP(nn.Module):
    def __init__(self, units: tuple[int, ...] = (512, 512, 512)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for u0, u1 in zip(units[:-1], units[1:]):
            layers += [nn.Linear(u0, u1), nn.ReLU(), nn.Dropout(0.1)]
        self.sequential = nn.Sequential(*layers[:-2])  # no activation after the last layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sequential(x)


class Wav2CLIPTower(nn.Module):
    PREFIXES = ("audio_encoder.", "audio_transform.")

    def __init__(self, embed_dim: int = 512, sample_rate: int = 16000, **_: Any) -> None:
        super().__init__()
        if embed_dim != 512 or sample_rate != 16000:
            raise ValueError("the Wav2CLIP tower is 16 kHz in, 512 dims out (OpenAI CLIP ViT-B/32's space)")
        self.audio_encoder = Wav2CLIPEncoder()
        self.audio_transform = _MLP()

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        return self.audio_encoder.features(wave)

    def front_end(self) -> FrontEnd:
        return self.audio_encoder.front_end()

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        return self.audio_transform(self.audio_encoder.trunk(features))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.embed(self.features(wave))

    @classmethod
    def select_state(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Keep the tower's keys from a Wav2CLIP checkpoint (which may hold training-only entries)."""
        return {k: v for k, v in state.items() if k.startswith(cls.PREFIXES)}
