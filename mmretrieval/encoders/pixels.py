"""Image files to RGB pixels with Pillow, without torch: what decoding, thumbnails and read-only commands need
(`image.py` adds the tower)."""
from __future__ import annotations

import io
import os
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from ..errors import DecodeError, UsageError

try:  # HEIC/HEIF (iPhone photos) through the optional `heif` extra
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:
    pillow_heif = None

HEIF_EXTS = frozenset({".heic", ".heics", ".heif", ".heifs", ".hif"})
# Formats Pillow lists but cannot decode here: stubs that need a handler, video, and PostScript (Ghostscript).
_NOT_DECODABLE = {"MPEG", "EPS"}


def image_extensions() -> frozenset[str]:
    """Extensions of every image format the installed Pillow and its plugins can open and decode."""
    from PIL import ImageFile

    exts = Image.registered_extensions()  # loads every plugin
    # HEIC is claimed even without its plugin, so that such photos are reported, not silently passed over.
    return HEIF_EXTS | frozenset(ext.lower() for ext, fmt in exts.items()
                     if fmt in Image.OPEN and fmt not in _NOT_DECODABLE
                     and not (isinstance(Image.OPEN[fmt][0], type)
                              and issubclass(Image.OPEN[fmt][0], ImageFile.StubImageFile)))


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
        # High bit depth grey, by its values alone (so the same pixels give the same picture whether they
        # are stored as I;16, I or F): 16-bit data keeps its level (65535 is white, 32768 mid-grey); data
        # that uses 12 bits or fewer of it (a 12-bit scan in a 16-bit file, values 0..4095 or even 0..30) is
        # shown from 0 to its brightest value, as viewers of such images (ImageJ, astronomy and microscopy
        # tools) show it, instead of nearly black; floats in [0, 1] are taken as they are; anything else
        # (negative or beyond 16 bits) is stretched from its darkest to its brightest value.
        arr = np.asarray(img, dtype=np.float64)
        finite = arr[np.isfinite(arr)]
        lo_v, hi_v = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if mode == "F" and lo_v >= 0.0 and hi_v <= 1.0:
            lo, hi = 0.0, 1.0
        elif lo_v >= 0.0 and hi_v <= 65535.0:
            lo, hi = 0.0, (65535.0 if hi_v >= 4096.0 else max(hi_v, 1.0))
        else:
            lo, hi = lo_v, hi_v
        arr = np.nan_to_num((arr - lo) / max(hi - lo, 1e-12), nan=0.0, posinf=1.0, neginf=0.0)
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
            img = None
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
                first = getattr(img, "_min_frame", 0)  # PSD numbers its frames (layers) from 1
                if img.tell() != first:  # animated: the first frame
                    img.seek(first)
                img.load()
            except DecodeError:
                raise
            except Image.DecompressionBombError:
                raise DecodeError(f"image too large: a frame exceeds {limit / 1e6:.0f} MP (decompression bomb "
                                  f"guard; MMR_MAX_PIXELS raises it)") from None
            except Image.UnidentifiedImageError:
                raise DecodeError(_unidentified_reason(fp)) from None
            except (OSError, SyntaxError, ValueError, EOFError) as e:
                raise DecodeError(_decode_failure(img, e)) from None
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


# TIFF compressions every libtiff build decodes; a failure with another one is most likely a codec that
# this build lacks (WebP, ZSTD, LERC, JBIG, LZMA, ...), not a damaged file.
_BASIC_TIFF = {"raw", "tiff_ccitt", "group3", "group4", "tiff_lzw", "jpeg", "tiff_jpeg", "packbits", "tiff_adobe_deflate",
               "tiff_deflate", "tiff_raw_16", "tiff_sgilog", "tiff_sgilog24", "tiff_thunderscan"}


def _decode_failure(img: Image.Image | None, e: BaseException) -> str:
    """A reason that says what is wrong: a codec this build lacks, or damaged data."""
    msg = str(e).strip() or type(e).__name__
    if img is not None and img.format == "TIFF" and "decoder error" in msg:
        comp = str(img.info.get("compression", "unknown"))
        if comp not in _BASIC_TIFF:
            name = comp.removeprefix("tiff_").upper()
            return f"TIFF with {name} compression: not supported by this libtiff (Pillow's build)"
        return f"corrupt TIFF data ({comp.removeprefix('tiff_')} compression): libtiff could not decode it"
    return f"corrupt or truncated image: {msg}"


def _unidentified_reason(fp: Any) -> str:
    try:
        fp.seek(0)
        head = fp.read(16)
    except (OSError, ValueError):
        head = b""
    if pillow_heif is None and head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"heim",
                                                                       b"heis", b"hevc", b"hevx"):
        return "HEIC/HEIF image: needs the optional 'heif' extra (pip install 'mmretrieval[heif]')"
    return "not a recognised image format"
