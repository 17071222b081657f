"""Images: pixels (`pixels.py`) through the model's own preprocessing and image tower."""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import UsageError
from .base import Encoder, normalize, to_device
from .pixels import load_image  # decoding, without torch: what read-only paths import instead of this module
from . import torch_gate


class ImageEncoder(Encoder):
    modality = "image"

    def __init__(self, model: torch.nn.Module | Callable[[], torch.nn.Module],
                 preprocess: Callable[[Image.Image], torch.Tensor], dim: int, device: torch.device,
                 draft_to: int | None = None, runner: Callable[[np.ndarray], np.ndarray] | None = None,
                 tokens: int | None = None) -> None:
        """`runner`: the tower under another runtime (`encoders.onnx_runtime`), float32 pixels in. `model`: the
        module, or a loader of it (see `Encoder.model`). `tokens`: a ViT's patches + 1 (None: read from the
        module, if it is a ViT)."""
        super().__init__(dim, device)
        self.model = model
        self.runner = runner
        self.tokens = tokens
        self.preprocess = preprocess
        self.draft_to = draft_to  # see load_image; part of the space fingerprint

    def load(self, source: str | os.PathLike | bytes | Image.Image) -> Image.Image:
        return load_image(source, self.draft_to)

    def prepare(self, item: Any) -> torch.Tensor:
        """Decode (if needed) and preprocess one image into the tower's input tensor."""
        if isinstance(item, torch.Tensor):
            return item
        if isinstance(item, (str, os.PathLike, bytes, Image.Image)):
            return self.preprocess(self.load(item))
        raise UsageError(f"image inputs must be paths, bytes, PIL images or preprocessed tensors, "
                         f"got {type(item).__name__}")

    def _encode_batch(self, batch: list[Any]) -> torch.Tensor | np.ndarray:
        pixels = [self.prepare(b) for b in batch]
        if self.runner is not None:
            return self.runner(torch.stack(pixels).float().numpy())
        return self.model.encode_image(to_device(pixels, self.device, self.dtype))

    def per_core(self) -> int:
        """A dynamic int8 ViT under ONNX Runtime with enough tokens for a core (`PER_CORE_MIN_TOKENS`; ViT-B-32:
        50), on few cores (`OrtTower.per_core`). A 12-MP photo takes ~20 ms of a core to decode and ~33 ms to
        encode, so each core decoding and encoding its own photos keeps both busy, where batches over all cores
        waited on their slowest thread whenever a decode thread ran (`Engine.index` of 12-MP photos on 2 Zen 4
        cores, side by side: 6-11 % faster, the same vectors)."""
        from .arrays import PER_CORE_MIN_TOKENS

        if self.runner is None:
            return 0
        if self.tokens is None:
            grid = getattr(getattr(self.model, "visual", None), "grid_size", None)
            self.tokens = int(np.prod(grid)) + 1 if grid is not None else 0
        if self.tokens < PER_CORE_MIN_TOKENS:
            return 0
        return int(getattr(self.runner, "per_core", 0))

    def encode_here(self, inputs: Sequence[Any]) -> np.ndarray:
        self.check_args(inputs, 1)
        if not self.per_core():
            return super().encode_here(inputs)
        with torch_gate.forward():
            x = torch.stack([self.prepare(b) for b in inputs]).float().numpy()
        return normalize(self.runner.on_this_thread(x))

    @property
    def dtype(self) -> torch.dtype:
        """The image tower's input format (bf16 or fp16 where the space's precision asks for it)."""
        return torch.float32 if self.runner is not None else next(self.model.visual.parameters()).dtype

