"""Images: one item per file, decoded by Pillow (every format it and its plugins decode)."""
from __future__ import annotations

import io
from typing import Any, Iterator

from ..encoders.pixels import image_extensions, load_image
from .base import DecodeContext, Item, Modality, register_modality
from .metadata import image_metadata


def decode(data: bytes | None, path: str, ctx: DecodeContext) -> Iterator[Item]:
    enc = ctx.space.image
    img = enc.load(data if data is not None else path)
    w, h = img.info.get("original_size", img.size)
    yield Item({"width": w, "height": h}, None, enc.preprocess(img), "image")


THUMB_SIZE = 256


def image_thumbnail(path: str) -> bytes:
    """A JPEG no larger than THUMB_SIZE on either side."""
    img = load_image(path)
    img.thumbnail((THUMB_SIZE, THUMB_SIZE))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def thumbnail(row: Any):
    return f"{row.file_id}.jpg", "image/jpeg", lambda: image_thumbnail(row.path)


IMAGE = register_modality(Modality(
    name="image",
    extensions=image_extensions,
    decode=decode,
    encoder=lambda space: space.image,
    encode_query=lambda enc, value: enc.encode([value])[0],
    thumbnail=thumbnail,
    metadata=image_metadata,
    media_types={".webp": "image/webp"},
))
