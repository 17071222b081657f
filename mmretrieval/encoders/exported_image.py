"""The image tower from its ONNX export, with open_clip's inference preprocessing redone in Pillow and numpy.

A one-off image query (`space.passport`) should not import torch and torchvision to resize one picture. open_clip's
eval transform for a square input and the ``shortest`` or ``squash`` resize modes is torchvision's Resize and
CenterCrop on a PIL image (which call Pillow's resize and crop), RGB, ToTensor and Normalize: each step below
makes the same calls on Pillow and the same float32 operations, so the pixels are the same bit for bit
(`tests/test_one_off.py` compares them on the real-world images). Other configurations get no torch-free path.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from ..errors import UsageError
from .arrays import check_args, unit_rows
from .pixels import load_image

_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def _square(size: Any) -> int | None:
    if isinstance(size, int):
        return size
    if isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1] and isinstance(size[0], int):
        return int(size[0])
    return None


def clip_pixels(pre: dict[str, Any]) -> Callable[[Image.Image], np.ndarray] | None:
    """open_clip's eval transform for the final preprocessing config `pre` (`towers.clip_configs`), as
    PIL image -> float32 ``[3, S, S]``; None where this module does not reproduce it."""
    side = _square(pre.get("size"))
    mode = pre.get("resize_mode") or "shortest"
    resample = _FILTERS.get("bilinear" if pre.get("interpolation") == "bilinear" else "bicubic")
    if side is None or mode not in ("shortest", "squash") or pre.get("mode", "RGB") != "RGB":
        return None
    mean = np.asarray(pre.get("mean"), np.float32).reshape(3, 1, 1)
    std = np.asarray(pre.get("std"), np.float32).reshape(3, 1, 1)

    def prepare(img: Image.Image) -> np.ndarray:
        w, h = img.size
        if mode == "squash":
            size = (side, side)
        else:  # torchvision's Resize(int): the shorter side to `side`, the longer by int() of its ratio
            short, long = (w, h) if w <= h else (h, w)
            new_long = int(side * long / short)
            size = (side, new_long) if w <= h else (new_long, side)
        if size != (w, h):
            img = img.resize(size, resample)
        if mode == "shortest":  # torchvision's CenterCrop (never padding: both sides are >= side here)
            w, h = img.size
            if (w, h) != (side, side):
                top, left = int(round((h - side) / 2.0)), int(round((w - side) / 2.0))
                img = img.crop((left, top, left + side, top + side))
        x = np.asarray(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        return (x - mean) / std

    return prepare


class ExportedImageEncoder:
    """A space's image tower as exported (`OrtTower`) with its preprocessing: the `encode()` contract of the
    other encoders, for processes that never load torch."""

    modality = "image"

    def __init__(self, runner: Any, prepare: Callable[[Image.Image], np.ndarray], dim: int,
                 draft_to: int | None) -> None:
        self.runner, self.prepare, self.dim, self.draft_to = runner, prepare, dim, draft_to

    def pixels(self, item: Any) -> np.ndarray:
        if isinstance(item, (str, os.PathLike, bytes, Image.Image)):
            return self.prepare(load_image(item, self.draft_to))
        raise UsageError(f"image inputs must be paths, bytes or PIL images, got {type(item).__name__}")

    def encode(self, inputs: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        check_args(type(self).__name__, inputs, batch_size)
        out = np.empty((len(inputs), self.dim), dtype=np.float32)
        for start in range(0, len(inputs), batch_size):
            chunk = list(inputs[start:start + batch_size])
            out[start:start + len(chunk)] = unit_rows(self.runner(np.stack([self.pixels(b) for b in chunk])))
        return out

    def warm_up(self) -> None:
        self.runner.open()
