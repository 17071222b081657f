"""GET /search (a text query in the URL), POST /search (JSON: text, item or parts; multipart: an image or sound
file)."""
# No `from __future__ import annotations`: FastAPI reads the route annotations at run time.

import os
import tempfile
from typing import Any, Optional

from fastapi import APIRouter, Query, Request
from starlette.exceptions import HTTPException
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from ...errors import UsageError
from ...modalities import modalities
from ..context import Context, UploadTooLarge, errors
from ..schemas import HitOut, SearchRequest

router = APIRouter(tags=["search"])
HITS = {"response_model": list[HitOut], "response_model_exclude_unset": True}

MULTIPART = {"type": "object", "properties": {
    "image": {"type": "string", "format": "binary", "description": "an image file as the query"},
    "audio": {"type": "string", "format": "binary", "description": "a sound file as the query"},
    "types": {"type": "array", "items": {"type": "string"}}, "k": {"type": "integer", "default": 10},
    "min_relevance": {"type": "number"}, "cutoff": {"type": "string"}, "sort": {"type": "string"},
    "path": {"type": "array", "items": {"type": "string"}}, "after": {"type": "string"},
    "before": {"type": "string"}, "min_size": {"type": "string"}, "max_size": {"type": "string"},
    "ext": {"type": "array", "items": {"type": "string"}}}}
POST_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/SearchRequest"}},
    "multipart/form-data": {"schema": MULTIPART}}}}


def ctx(request: Request) -> Context:
    return request.app.state.ctx


def hits(result: list) -> list[dict[str, Any]]:
    return [h.to_dict() for h in result]


@router.get("/search", **HITS, responses=errors(404, 409, 422, 503))
def search_get(request: Request, q: str = Query(..., description="text query"),
               type: Optional[list[str]] = Query(None, description="image, audio, text, video (repeatable)"),
               k: int = Query(10), min_relevance: Optional[float] = Query(None),
               cutoff: Optional[str] = Query(None, description="none or gap"),
               path: Optional[list[str]] = Query(None, description="folder, file or glob (repeatable)"),
               after: Optional[str] = Query(None, description="YYYY-MM-DD[THH:MM]"), before: Optional[str] = Query(None),
               min_size: Optional[str] = Query(None), max_size: Optional[str] = Query(None),
               ext: Optional[list[str]] = Query(None), sort: Optional[str] = Query(None, description="relevance, date or path"),
               mode: Optional[str] = Query(None, description="vector, keyword or hybrid")):
    c = ctx(request)
    filters = {"paths": path, "after": after, "before": before, "min_size": min_size, "max_size": max_size,
               "exts": ext}
    with c.reader() as engine:
        return hits(engine.search(q, k=k, types=type or None, min_relevance=min_relevance, cutoff=cutoff,
                                    filters=filters, sort=sort, mode=mode))


@router.post("/search", **HITS, responses=errors(404, 409, 413, 422, 503), openapi_extra=POST_BODY)
async def search_post(request: Request):
    """JSON {text | item | parts, types, k, ...} (SearchRequest), or a multipart form with an `image` or `audio`
    file and the same options as fields."""
    # Only reading the body is async; the search runs in the thread pool like every `def` route, so a slow one
    # (the towers loading at first use) never holds the event loop and every other route with it.
    c = ctx(request)
    ctype = request.headers.get("content-type", "")
    declared = int(request.headers.get("content-length") or 0)
    if declared > c.max_upload:
        raise UploadTooLarge(f"upload of {declared} bytes exceeds the limit of {c.max_upload} bytes")
    if ctype.startswith("multipart/form-data"):
        try:
            form = await request.form()
        except HTTPException as e:  # Starlette's: a malformed form is the request's fault, said as ours
            raise UsageError(f"the multipart form cannot be read: {e.detail}") from None
        k = _int(form.get("k", 10))
        types = form.getlist("types") or form.getlist("type") or None
        cut = {"min_relevance": _relevance(form.get("min_relevance")), "cutoff": form.get("cutoff") or None,
               "filters": {"paths": form.getlist("path") or None, "after": form.get("after"),
                           "before": form.get("before"), "min_size": form.get("min_size"),
                           "max_size": form.get("max_size"), "exts": form.getlist("ext") or None},
               "sort": form.get("sort") or None}
        for field in (m.name for m in modalities() if m.file_query):
            up = form.get(field)
            if up is not None and hasattr(up, "read"):
                data = await _read_limited(up, c.max_upload)
                suffix = os.path.splitext(up.filename or "")[1][:10]  # decoders go by content, not by name
                return await run_in_threadpool(_search_upload, c, field, data, suffix, k, types, cut)
        fields = " or ".join(repr(m.name) for m in modalities() if m.file_query)
        raise UsageError(f"multipart search needs a file field named {fields}")
    try:
        raw = await request.json()
    except ValueError:
        raise UsageError("send JSON {text | item | parts, types, k} or a multipart form with an image/audio "
                         "file") from None
    if not isinstance(raw, dict):
        raise UsageError("the JSON body must be an object: {text | item | parts, types, k}")
    try:
        body = SearchRequest.model_validate(raw)
    except ValidationError as e:
        raise UsageError(f"bad search request: {readable(e)}") from None
    return await run_in_threadpool(_search_json, c, body)


def readable(e: ValidationError) -> str:
    """pydantic's errors as one line: `k: Input should be a valid integer; ...`."""
    return "; ".join(f"{'.'.join(map(str, x['loc'])) or 'body'}: {x['msg']}" for x in e.errors()[:5])


def _search_upload(c: Context, field: str, data: bytes, suffix: str, k: int, types: Any, cut: dict[str, Any]):
    with tempfile.NamedTemporaryFile(suffix=suffix) as f:
        f.write(data)
        f.flush()
        with c.reader() as engine:
            return hits(engine.search(**{field: f.name}, k=k, types=types, **cut))


def _search_json(c: Context, body: SearchRequest):
    cut = {"min_relevance": body.min_relevance, "cutoff": body.cutoff,
           "filters": body.filters.model_dump(exclude_none=True) if body.filters else None, "sort": body.sort}
    given = [n for n in ("text", "item", "parts") if getattr(body, n) is not None]
    if len(given) > 1:
        raise UsageError(f"give one of text, item, parts (got {', '.join(given)})")
    with c.reader() as engine:
        if body.parts is not None:
            parts = [(p.weight, p.modality, p.value) for p in body.parts]
            return hits(engine.search_parts(parts, k=body.k, types=body.types, mode=body.mode, **cut))
        if body.item is not None:
            return hits(engine.search_like(body.item, k=body.k, types=body.types, **cut))
        return hits(engine.search(body.text, k=body.k, types=body.types, mode=body.mode, **cut))


def _relevance(v: Any) -> Optional[float]:
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        raise UsageError(f"min_relevance must be a number from 0 to 1, got {v!r}") from None


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        raise UsageError(f"k must be an integer, got {v!r}") from None


async def _read_limited(upload: Any, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        chunk = await upload.read(1 << 20)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise UploadTooLarge(f"upload exceeds the limit of {limit} bytes (--max-upload)")
        chunks.append(chunk)
    return b"".join(chunks)
