"""Images: one item per file, decoded by Pillow (every format it and its plugins decode)."""
from __future__ import annotations

import io
from typing import Any, Iterator

import numpy as np

from ..dates import span
from ..encoders.pixels import image_extensions, load_image
from .base import DecodeContext, Item, Modality, register_modality
from .metadata import image_metadata
from .sketch import picture_likeness, picture_sketch
from .text import ocr_items


def decode(data: bytes | None, path: str, ctx: DecodeContext) -> Iterator[Item]:
    enc = ctx.space.image
    img = enc.load(data if data is not None else path)
    w, h = img.info.get("original_size", img.size)
    yield Item({"width": w, "height": h}, None, enc.preprocess(img), "image")
    if ctx.options.ocr == "all":  # at full size: the tower's draft decode is too small to read print
        yield from ocr_items(load_image(data if data is not None else path), {}, ctx)


THUMB_SIZE = 256


def picture(path: str, locator: dict[str, Any]) -> Any:
    """The picture an image item stands for (PIL): the image file, a document's figure or page found again by its
    locator, or a video scene's most typical frame decoded again at its time."""
    if is_scene(locator):
        from ..video.frames import frame_at

        return frame_at(path, float(locator.get("frame", locator.get("start", 0.0))))
    if is_figure(locator):
        from ..documents import format_of
        from ..errors import DecodeError

        fmt = format_of(path)
        if fmt is None or fmt.figure is None:
            raise DecodeError(f"{path} keeps no figures that can be found again")
        return fmt.figure(path, locator)
    return load_image(path)


def picture_thumbnail(path: str, locator: dict[str, Any]) -> bytes:
    """A JPEG of the item's picture no larger than THUMB_SIZE on either side."""
    img = picture(path, locator)
    img.thumbnail((THUMB_SIZE, THUMB_SIZE))
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def is_scene(locator: dict[str, Any]) -> bool:
    """Is this image item a scene of a video?"""
    return "scene" in locator


def is_figure(locator: dict[str, Any]) -> bool:
    """Is this image item a figure inside a document (not an image file of its own)?"""
    return "figure" in locator or bool(locator.get("scan"))


def thumbnail(row: Any):
    own = is_scene(row.locator) or is_figure(row.locator)  # one of a file's pictures, not the file's own
    return f"{row.id if own else row.file_id}.jpg", "image/jpeg", lambda: picture_thumbnail(row.path, row.locator)


def sketch(row: Any) -> np.ndarray:
    loc = row.locator
    if is_scene(loc) and "end" in loc:  # the scene's middle: two encodings of a video keep their cuts' times, not
        # the frame each picked as most typical
        loc = {**loc, "frame": (float(loc.get("start", 0.0)) + float(loc["end"])) / 2}
    return picture_sketch(picture(row.path, loc))


def describe(locator: dict[str, Any], text: str | None) -> tuple[str, str]:
    from ..documents import place
    if is_scene(locator):
        return "", "  " + span(locator.get("start", 0), locator.get("end", 0))
    return (place(locator), "") if is_figure(locator) else ("", "")


IMAGE = register_modality(Modality(
    name="image",
    extensions=image_extensions,
    decode=decode,
    encoder=lambda space: space.image,
    encode_query=lambda enc, value: enc.encode([value])[0],
    thumbnail=thumbnail,
    describe=describe,
    metadata=image_metadata,
    media_types={".webp": "image/webp"},
    sketch=sketch,
    likeness=picture_likeness,
))
