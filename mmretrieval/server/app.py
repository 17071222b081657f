"""The HTTP API and the search page. Routes are thin: they validate transport details (auth, upload
size) and map the engine's typed errors to status codes; the engine does the rest."""
# No `from __future__ import annotations` here: FastAPI reads the route annotations at run time.

import hmac
import logging
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

from .. import __version__
from ..engine import Engine
from ..errors import (DecodeError, IndexLockedError, IndexNotFoundError, ItemNotFoundError, MissingWeightsError,
                      MMRError, SpaceError, SpaceMismatchError, UsageError)
from ..modalities import get_modality, modalities
from .media import cached, media_type

DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024
STATUS = [(UsageError, 422), (DecodeError, 422), (ItemNotFoundError, 404), (IndexNotFoundError, 404),
          (SpaceMismatchError, 409), (IndexLockedError, 423), (MissingWeightsError, 503), (SpaceError, 500),
          (MMRError, 500)]
PAGE = Path(__file__).with_name("page.html")
log = logging.getLogger(__name__)


class UploadTooLarge(MMRError):
    pass


def create_app(index: str | os.PathLike, *, token: str | None = None, max_upload: int = DEFAULT_MAX_UPLOAD,
               device: str = "cpu"):
    try:
        from fastapi import FastAPI, Query, Request
        from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
        from starlette.concurrency import run_in_threadpool
    except ImportError:  # pragma: no cover - depends on the install
        raise UsageError("the server needs the optional extra: pip install 'mmretrieval[server]'") from None

    engine = Engine(index, readonly=True, device=device)
    redact_tokens_in_access_log()
    lock = threading.Lock()  # one engine, one SQLite connection, one model: requests take turns
    thumbs = engine.path / "thumbnails"
    app = FastAPI(title="mmretrieval", version=__version__,
                  description="Search photos, recordings and documents by meaning, across modalities.")
    app.state.engine = engine

    @app.exception_handler(MMRError)
    async def _domain_error(request: Request, exc: MMRError):
        code = 413 if isinstance(exc, UploadTooLarge) else next(c for t, c in STATUS if isinstance(exc, t))
        return JSONResponse({"error": str(exc), "type": type(exc).__name__}, status_code=code)

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        if token and request.url.path not in ("/healthz",):
            given = request.query_params.get("token") or ""
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:]
            if not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"error": "missing or wrong token: send 'Authorization: Bearer TOKEN' "
                                              "or ?token=TOKEN", "type": "Unauthorized"}, status_code=401)
        return await call_next(request)

    def hits(result) -> list[dict[str, Any]]:
        return [h.to_dict() for h in result]

    def parse_types(types: list[str] | None) -> list[str] | None:
        return types or None  # the engine splits "image,audio" and validates

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/stats")
    def stats():
        with lock:
            return engine.stats()

    @app.get("/search")
    def search_get(q: str = Query(..., description="text query"), type: list[str] | None = Query(None),
                   k: int = Query(10), min_relevance: float | None = Query(None, ge=0, le=1),
                   cutoff: str | None = Query(None, description="none or gap"),
                   path: list[str] | None = Query(None, description="folder, file or glob (repeatable)"),
                   after: str | None = Query(None, description="YYYY-MM-DD[THH:MM]"), before: str | None = Query(None),
                   min_size: str | None = Query(None), max_size: str | None = Query(None),
                   ext: list[str] | None = Query(None), sort: str | None = Query(None, description="relevance, date or path"),
                   mode: str | None = Query(None, description="vector, keyword or hybrid")):
        filters = {"paths": path, "after": after, "before": before, "min_size": min_size, "max_size": max_size,
                   "exts": ext}
        with lock:
            return hits(engine.search(q, k=k, types=parse_types(type), min_relevance=min_relevance, cutoff=cutoff,
                                      filters=filters, sort=sort, mode=mode))

    @app.post("/search")
    async def search_post(request: Request):
        # Only reading the body is async; the search itself runs in the thread pool like every `def` route, so a
        # slow one (the towers loading at first use) never holds the event loop and every other route with it.
        ctype = request.headers.get("content-type", "")
        declared = int(request.headers.get("content-length") or 0)
        if declared > max_upload:
            raise UploadTooLarge(f"upload of {declared} bytes exceeds the limit of {max_upload} bytes")
        if ctype.startswith("multipart/form-data"):
            form = await request.form()
            k = _int(form.get("k", 10))
            types = parse_types(form.getlist("types") or form.getlist("type"))
            cut = {"min_relevance": _relevance(form.get("min_relevance")), "cutoff": form.get("cutoff") or None,
                   "filters": {"paths": form.getlist("path") or None, "after": form.get("after"),
                               "before": form.get("before"), "min_size": form.get("min_size"),
                               "max_size": form.get("max_size"), "exts": form.getlist("ext") or None},
                   "sort": form.get("sort") or None}
            for field in (m.name for m in modalities() if m.file_query):
                up = form.get(field)
                if up is not None and hasattr(up, "read"):
                    data = await _read_limited(up, max_upload)
                    suffix = os.path.splitext(up.filename or "")[1][:10]  # decoders go by content, not by name
                    return await run_in_threadpool(search_upload, field, data, suffix, k, types, cut)
            fields = " or ".join(repr(m.name) for m in modalities() if m.file_query)
            raise UsageError(f"multipart search needs a file field named {fields}")
        try:
            body = await request.json()
        except ValueError:
            raise UsageError("send JSON {text | item, types, k} or a multipart form with an image/audio file") from None
        if not isinstance(body, dict):
            raise UsageError("the JSON body must be an object: {text | item, types, k}")
        return await run_in_threadpool(search_json, body)

    def search_upload(field: str, data: bytes, suffix: str, k: int, types: Any, cut: dict[str, Any]):
        with tempfile.NamedTemporaryFile(suffix=suffix) as f:
            f.write(data)
            f.flush()
            with lock:
                return hits(engine.search(**{field: f.name}, k=k, types=types, **cut))

    def search_json(body: dict[str, Any]):
        k = _int(body.get("k", 10))
        types = body.get("types")
        cut = {"min_relevance": _relevance(body.get("min_relevance")), "cutoff": body.get("cutoff"),
               "filters": body.get("filters"), "sort": body.get("sort")}
        with lock:
            if body.get("parts") is not None:
                return hits(engine.search_parts(_parts(body["parts"]), k=k, types=types, mode=body.get("mode"), **cut))
            if body.get("item") is not None:
                return hits(engine.search_like(_int(body["item"]), k=k, types=types, **cut))
            return hits(engine.search(body.get("text"), k=k, types=types, mode=body.get("mode"), **cut))

    @app.get("/relevance")
    def relevance():
        """How relevance is computed for this index: the self-labelled curve per pair of modalities and the
        calibration, if one was fitted (`mmr calibrate`)."""
        with lock:
            return engine.relevance.describe()

    @app.get("/audit")
    def audit():
        """The calibration audit of the index: best-match vs random cosines per pair of modalities."""
        from ..relevance.audit import audit_index, public

        with lock:
            return public(audit_index(engine))

    @app.get("/audit.png")
    def audit_png():
        from ..relevance.audit import audit_index, plot

        with lock:
            report = audit_index(engine)
        with tempfile.TemporaryDirectory() as tmp:
            data = plot(report, Path(tmp) / "audit.png").read_bytes()
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    def item_or_404(item_id: int):
        row = engine.item(item_id)
        if row is None:
            raise ItemNotFoundError(f"no indexed item with id {item_id}")
        return row

    @app.get("/items/{item_id}")
    def item(item_id: int):
        with lock:
            r = item_or_404(item_id)
        return {"id": r.id, "modality": r.modality, "path": r.path, "locator": r.locator, "text": r.text,
                "media": f"/items/{r.id}/media", "thumbnail": f"/items/{r.id}/thumbnail"}

    @app.get("/items/{item_id}/thumbnail")
    def thumbnail(item_id: int):
        with lock:
            r = item_or_404(item_id)
        # Only paths from the catalog reach the filesystem; nothing from the request does.
        m = get_modality(r.modality)
        thumb = m.thumbnail(r) if m.thumbnail is not None else None
        if thumb is None:
            raise ItemNotFoundError(f"item {item_id} is a {r.modality} item; it has no thumbnail")
        name, media_type_, make = thumb
        return Response(cached(thumbs, name, make), media_type=media_type_)

    @app.get("/items/{item_id}/media")
    def media(item_id: int):
        with lock:
            r = item_or_404(item_id)
        if not os.path.isfile(r.path):
            raise ItemNotFoundError(f"the file of item {item_id} is no longer on disk: {r.path}")
        return FileResponse(r.path, media_type=media_type(r.path))

    return app


class _RedactToken(logging.Filter):
    """Blanks the value of ``token=`` in uvicorn's access log lines (the page's media links carry it): an access
    log is read by more people than the token is meant for."""

    PATTERN = re.compile(r"((?:^|[?&])token=)[^&\s]*", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.PATTERN.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = self.PATTERN.sub(r"\1***", record.msg)
        return True


def redact_tokens_in_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _RedactToken) for f in access.filters):
        access.addFilter(_RedactToken())


def _parts(raw: Any) -> list[tuple[float, str, Any]]:
    """[{"weight": 1, "modality": "text", "value": "a dog"}, {"weight": -1, "modality": "item", "value": 12}]"""
    if not isinstance(raw, list) or not all(isinstance(p, dict) for p in raw):
        raise UsageError('"parts" must be a list of {"weight", "modality", "value"} objects')
    return [(p.get("weight", 1), p.get("modality"), p.get("value")) for p in raw]


def _relevance(v: Any) -> float | None:
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
        raise UsageError(f"k and item must be integers, got {v!r}") from None


async def _read_limited(upload, limit: int) -> bytes:
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


def serve(index: str, *, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          max_upload: int = DEFAULT_MAX_UPLOAD, device: str = "cpu") -> None:
    try:
        import uvicorn
    except ImportError:
        raise UsageError("the server needs the optional extra: pip install 'mmretrieval[server]'") from None
    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        raise UsageError(f"binding to {host} exposes your files: give --token (or MMR_TOKEN) so requests must carry it")
    app = create_app(index, token=token, max_upload=max_upload, device=device)
    warm_up(app.state.engine)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def warm_up(engine: Engine) -> threading.Thread:
    """Load the space and open its towers' runtimes in the background while the server starts listening: the
    first query otherwise waited for them (ViT-B-32: seconds for the weights, 0.2-1.3 s per ONNX session). A
    failure here is left to the first query, which meets it again and gets its status code."""
    def run() -> None:
        try:
            engine.prepare()
        except Exception:  # noqa: BLE001
            log.debug("warm-up failed; the first query will say why", exc_info=True)

    thread = threading.Thread(target=run, name="mmr-warm-up", daemon=True)
    thread.start()
    return thread
