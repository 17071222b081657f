"""How images are decoded for a space, part of its fingerprint; torch-free, so that opening an index reads it
without loading a tower."""
from __future__ import annotations

from ..errors import SpaceError

# How images are decoded before the model's preprocessing: a JPEG decodes in the DCT domain (1/2, 1/4 or
# 1/8 scale) to a shorter side of no less than `jpeg_draft` x the model's input size (see
# encoders.pixels.load_image). It changes pixels slightly, so it is part of the fingerprint, and each index
# keeps the setting it was built with: those made before the setting was recorded decode at 2x.
# At 1x a 12-MP photo decodes at 1/8 for a 224-px model (67 vs 51 img/s decode + preprocess on 2 cores);
# against a full decode, cosine >= 0.999 on the real-world JPEGs with ViT-B-32 (tests/test_decode_scale.py).
IMAGE_DECODES = {2: {"jpeg_draft": "shorter side >= 2x input size", "version": 1},
                 1: {"jpeg_draft": "shorter side >= input size", "version": 2}}
JPEG_DRAFT = 1          # for new indexes
JPEG_DRAFT_BEFORE = 2   # for indexes that did not record theirs
IMAGE_DECODE = IMAGE_DECODES[JPEG_DRAFT]


def check_jpeg_draft(value: int) -> int:
    if value not in IMAGE_DECODES:
        raise SpaceError(f"unknown JPEG decode scale setting {value!r}; valid: {', '.join(map(str, IMAGE_DECODES))}")
    return value
