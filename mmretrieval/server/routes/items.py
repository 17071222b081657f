"""An indexed item: its metadata, its thumbnail, and its file (with byte ranges, so a player can seek)."""
# No `from __future__ import annotations`: FastAPI reads the route annotations at run time.

import os

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from ...catalog import MEMORY
from ...errors import ItemNotFoundError
from ...modalities import get_modality
from ..context import Context, errors
from ..media import cached, media_type
from ..schemas import ItemOut

router = APIRouter(tags=["items"])
# What a file can be served as: the media types of the modalities' files (Python's guess, else these).
FILE_TYPES = ["image/*", "audio/*", "video/*", "text/*", "application/pdf", "application/epub+zip",
              "application/msword", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
              "application/vnd.oasis.opendocument.text", "application/octet-stream"]


def ctx(request: Request) -> Context:
    return request.app.state.ctx


def _row(c: Context, item_id: int):
    with c.reader() as engine:
        row = engine.item(item_id)
    if row is None:
        raise ItemNotFoundError(f"no indexed item with id {item_id}")
    return row


@router.get("/items/{item_id}", response_model=ItemOut, responses=errors(404, 422))
def item(request: Request, item_id: int):
    r = _row(ctx(request), item_id)
    return {"id": r.id, "modality": r.modality, "path": r.path, "locator": r.locator, "text": r.text,
            "media": f"/items/{r.id}/media", "thumbnail": f"/items/{r.id}/thumbnail"}


@router.get("/items/{item_id}/thumbnail", response_class=Response, responses={
    200: {"content": {"image/jpeg": {}, "image/png": {}}, "description": "a picture's thumbnail (JPEG) or a "
                                                                           "sound's waveform (PNG)"},
    **errors(404, 422)})
def thumbnail(request: Request, item_id: int):
    c = ctx(request)
    r = _row(c, item_id)
    # Only paths from the catalog reach the filesystem; nothing from the request does.
    m = get_modality(r.modality)
    thumb = m.thumbnail(r) if m.thumbnail is not None else None
    if thumb is None:
        raise ItemNotFoundError(f"item {item_id} is a {r.modality} item; it has no thumbnail")
    name, media_type_, make = thumb
    return Response(cached(c.engine.path / "thumbnails", name, make), media_type=media_type_)


@router.get("/items/{item_id}/media", response_class=FileResponse, responses={
    200: {"content": {t: {} for t in FILE_TYPES}, "description": "the item's file"},
    206: {"content": {t: {} for t in FILE_TYPES}, "description": "the bytes a Range header asked for"},
    416: {"content": {"text/plain": {}}, "description": "a Range beyond the file's end"},
    **errors(404, 422)})
def media(request: Request, item_id: int):
    r = _row(ctx(request), item_id)
    if r.file_modality == MEMORY:
        raise ItemNotFoundError(f"item {item_id} is a note, not a file")
    if not os.path.isfile(r.path):
        raise ItemNotFoundError(f"the file of item {item_id} is no longer on disk: {r.path}")
    return FileResponse(r.path, media_type=media_type(r.path))
