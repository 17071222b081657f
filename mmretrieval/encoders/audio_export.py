"""The audio family's export hook: an audio tower's network (`embed`, after the signal front end) as an
`onnx_runtime.TowerExport`, its int8 static (scales from synthetic calibration signals, see `onnx_runtime`)."""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from .onnx_runtime import TowerExport

# Checked on held-out signals (not the calibration's) at the bar real data must meet: the shipped tiny audio tower
# measured 0.985 on its held-out clips and is refused; Wav2CLIP's ResNet 0.9998.
AUDIO_INT8_MIN_COSINE = 0.999


class _Network(nn.Module):
    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.tower = tower

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tower.embed(x)


def audio_export(enc: Any) -> TowerExport:
    """The network of `enc` (an `AudioEncoder`) from its features (batch, channels, bands, frames): frames stay
    symbolic. Calibrated on `enc.calibration_features(0)`, checked on seed 1's and on a shorter clip."""
    tower = enc.tower
    held_out = torch.from_numpy(np.concatenate(enc.calibration_features(1)))
    shorter = held_out[:, :, :, : max(1, held_out.shape[3] * 3 // 4)].contiguous()
    return TowerExport(lambda: _Network(copy.deepcopy(tower).float().eval()), _Network(tower), "features",
                       {3: "frames"}, [held_out, shorter], calibration=enc.calibration_features(0),
                       int8_min_cosine=AUDIO_INT8_MIN_COSINE)
