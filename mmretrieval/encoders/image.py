"""Images: Pillow decode with every mode made RGB the right way, then the model's own preprocessing."""
from __future__ import annotations

import io
import os
import warnings
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, ImageOps

from ..errors import DecodeError, UsageError
from .base import Encoder

# Above this many pixels an image is treated as a decompression bomb; $MMR_MAX_PIXELS changes it.
DEFAULT_MAX_PIXELS = 178_956_970  # twice Pillow's warning limit: where Pillow itself refuses


def max_pixels() -> int:
    """The decompression-bomb limit: $MMR_MAX_PIXELS (empty means the default), read at each use."""
    text = os.environ.get("MMR_MAX_PIXELS", "").strip().replace("_", "")
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(text))
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"MMR_MAX_PIXELS={os.environ['MMR_MAX_PIXELS']!r} is not a positive number of pixels "
                         f"(default {DEFAULT_MAX_PIXELS:,}; e.g. MMR_MAX_PIXELS=400000000)")
    return value


def _open_limits(limit: int) -> None:
    """Let our limit, not Pillow's, decide. Pillow warns above MAX_IMAGE_PIXELS and refuses above twice it;
    the warning is ignored once here (a warnings.catch_warnings() in decode threads is process-wide and
    not thread-safe), and the refusal is an exception like any other."""
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < limit:
        Image.MAX_IMAGE_PIXELS = limit
    if not any(f[0] == "ignore" and f[2] is Image.DecompressionBombWarning for f in warnings.filters):
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
MIN_SIDE = 1


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency is composited on white, not dropped to black."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1.0)
        if mode in ("I", "F"):
            lo = min(float(arr.min()), 0.0)
            arr = (arr - lo) / max(hi - lo, 1e-12)
        else:
            arr = arr / hi
        grey = Image.fromarray(np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
        return grey.convert("RGB")
    if mode == "CMYK":
        return img.convert("RGB")
    return img.convert("RGB")


def load_image(source: str | os.PathLike | bytes | Image.Image, draft_to: int | None = None) -> Image.Image:
    """Open an image file (or bytes) as RGB: EXIF orientation applied, first frame of animations.

    `draft_to`: let a JPEG decode straight to a smaller size in the DCT domain (Pillow's `draft`, a
    scale of 1/2, 1/4 or 1/8) as long as its shorter side stays at least this many pixels; the model's
    own resize and crop then run on that. The original size is kept in ``info["original_size"]``.
    """
    orig: tuple[int, int] | None = None
    if isinstance(source, Image.Image):
        img = source
    else:
        limit = max_pixels()
        _open_limits(limit)
        try:
            fp: Any = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
        except OSError as e:
            raise DecodeError(f"cannot read: {e.strerror or e}") from None
        with fp:
            try:
                img = Image.open(fp)
                w, h = img.size
                if w * h > limit:
                    raise DecodeError(f"image too large: {w}x{h} = {w * h / 1e6:.0f} MP exceeds "
                                      f"{limit / 1e6:.0f} MP (decompression bomb guard; MMR_MAX_PIXELS raises it)")
                orig = (w, h)
                if draft_to and img.format == "JPEG" and min(w, h) >= 2 * draft_to:
                    s = draft_to / min(w, h)
                    img.draft("RGB", (int(w * s + 0.999), int(h * s + 0.999)))
                img.seek(0)  # animated: first frame
                img.load()
            except DecodeError:
                raise
            except Image.DecompressionBombError:
                raise DecodeError(f"image too large: a frame exceeds {limit / 1e6:.0f} MP (decompression bomb "
                                  f"guard; MMR_MAX_PIXELS raises it)") from None
            except Image.UnidentifiedImageError:
                raise DecodeError("not a recognised image format") from None
            except (OSError, SyntaxError, ValueError, EOFError) as e:
                raise DecodeError(f"corrupt or truncated image: {e}") from None
    if min(img.size) < MIN_SIDE:
        raise DecodeError(f"image has no pixels ({img.size[0]}x{img.size[1]})")
    orig = orig or img.size
    try:
        if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90°: width and height swap
            orig = (orig[1], orig[0])
        img = ImageOps.exif_transpose(img) or img
    except Exception:  # broken EXIF must not lose the picture
        pass
    try:
        out = to_rgb(img)
    except (OSError, ValueError) as e:
        raise DecodeError(f"cannot convert image mode {img.mode} to RGB: {e}") from None
    out.info["original_size"] = orig
    return out


class ImageEncoder(Encoder):
    modality = "image"

    def __init__(self, model: torch.nn.Module, preprocess: Callable[[Image.Image], torch.Tensor], dim: int,
                 device: torch.device, draft_to: int | None = None) -> None:
        super().__init__(dim, device)
        self.model = model
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

    def _encode_batch(self, batch: list[Any]) -> torch.Tensor:
        x = torch.stack([self.prepare(b) for b in batch])
        return self.model.encode_image(x.to(self.device, self.dtype))

    @property
    def dtype(self) -> torch.dtype:
        """The image tower's weight format (bf16 where the space's precision asks for it)."""
        return next(self.model.visual.parameters()).dtype

