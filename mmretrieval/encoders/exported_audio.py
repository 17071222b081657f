"""The audio tower from its ONNX export: the front end in numpy (`audio_front`), the network under ONNX Runtime
(`ort_tower`), no torch. Inputs, windows and pooling are the torch encoder's (`audio_inputs`), so a one-off
audio query (`space.passport`) gets the vector a loaded space gives (to ~4e-6, `tests/test_one_off.py`)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .arrays import check_args, unit_rows
from .audio_front import FrontEnd
from .audio_inputs import AudioInputs


class ExportedAudioEncoder(AudioInputs):
    modality = "audio"

    def __init__(self, runner: Any, front: FrontEnd, dim: int, sample_rate: int, window_s: float, hop_s: float,
                 min_samples: int) -> None:
        self.runner, self.front, self.dim = runner, front, dim
        self.sample_rate, self.window_s, self.hop_s, self.min_samples = sample_rate, window_s, hop_s, min_samples

    def encode(self, inputs: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        check_args(type(self).__name__, inputs, batch_size)
        out = np.empty((len(inputs), self.dim), dtype=np.float32)
        for start in range(0, len(inputs), batch_size):
            chunk = list(inputs[start:start + batch_size])
            waves, groups = self.same_lengths(chunk)
            for idx in groups:
                features = self.front(np.stack([waves[i] for i in idx]))
                out[[start + i for i in idx]] = unit_rows(self.runner(features))
        return out

    def warm_up(self) -> None:
        self.runner.open()
