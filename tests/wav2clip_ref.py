"""The `wav2clip` package's own model code as a reference for our tower.

torchaudio does not install beside our torch, so the reference gets a minimal stand-in for
`torchaudio.transforms.Spectrogram` written from torchaudio's documented defaults (in the tests only)."""
from __future__ import annotations

import sys
import types

import pytest
import torch


class _Spectrogram(torch.nn.Module):
    """torchaudio.transforms.Spectrogram(n_fft, hop_length) with its documented defaults: win_length=n_fft,
    window_fn=torch.hann_window (periodic), pad=0, power=2.0, normalized=False, center=True,
    pad_mode='reflect', onesided=True; the window is a registered buffer."""

    def __init__(self, n_fft=400, hop_length=None, **_):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length or n_fft // 2
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, x):
        shape = x.shape
        s = torch.stft(x.reshape(-1, shape[-1]), self.n_fft, self.hop_length, self.n_fft, self.window,
                       center=True, pad_mode="reflect", normalized=False, onesided=True, return_complex=True)
        s = s.abs().pow(2.0)
        return s.reshape(shape[:-1] + s.shape[-2:])


def wav2clip_reference():
    """The module `wav2clip.model.encoder` (ResNetExtractor, MLPLayers); skips when the package is absent."""
    if "torchaudio" not in sys.modules:
        ta = types.ModuleType("torchaudio")
        ta.transforms = types.SimpleNamespace(Spectrogram=_Spectrogram)
        sys.modules["torchaudio"] = ta
    return pytest.importorskip("wav2clip.model.encoder", reason="pip install --no-deps wav2clip==0.1.0")
