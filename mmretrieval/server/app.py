"""The HTTP API and the search page: the app, its error handling and auth; the routes live in `routes/` (one
router per area), the request and response models in `schemas` (the OpenAPI document is made from them)."""
# No `from __future__ import annotations` here: FastAPI reads the route annotations at run time.

import json
import logging
import os
import re
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Optional

from .. import __version__
from ..engine import Engine
from ..errors import (DecodeError, IndexLockedError, IndexNotFoundError, ItemNotFoundError, MissingWeightsError,
                      MMRError, SpaceError, SpaceMismatchError, UsageError)
from .auth import REFUSAL, check_binding, token_matches
from .context import Context, Forbidden, UploadTooLarge, reader_count

DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024
STATUS = [(UploadTooLarge, 413), (Forbidden, 403), (UsageError, 422), (DecodeError, 422), (ItemNotFoundError, 404),
          (IndexNotFoundError, 404), (SpaceMismatchError, 409), (IndexLockedError, 423), (MissingWeightsError, 503),
          (SpaceError, 500), (MMRError, 500)]
PAGE = Path(__file__).with_name("page.html")
COLLECTION_PAGE = Path(__file__).with_name("collection.html")
OPEN = ("/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect")  # no token: they show no data
log = logging.getLogger(__name__)


def create_app(index: str | os.PathLike, *, token: Optional[str] = None, max_upload: int = DEFAULT_MAX_UPLOAD,
               device: str = "cpu", allow_index: Optional[list[str]] = None, readers: Optional[int] = None):
    """The API over the index at `index`. Writes (notes, indexing under `allow_index`) need `token`. `readers`:
    requests answered at once (`context.Readers`; None: the CPUs, at most 4); more wait for one to finish."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import HTMLResponse, JSONResponse
        from starlette.exceptions import HTTPException as StarletteHTTPException
    except ImportError:  # pragma: no cover - depends on the install
        raise UsageError("the server needs the optional extra: pip install 'mmretrieval[server]'") from None
    from .routes import collection, items, memories, search, views
    from .schemas import SearchRequest

    ctx = Context(index, token=token, max_upload=max_upload, device=device, allow_index=allow_index, readers=readers)
    redact_tokens_in_access_log()

    @asynccontextmanager
    async def lifespan(app):
        yield
        ctx.close_writer()  # the first reader lives as long as the app (a test client may start and stop it often)
        ctx.reader.close()

    app = FastAPI(title="mmretrieval", version=__version__, lifespan=lifespan,
                  description="Search photos, recordings and documents by meaning, across modalities; keep an "
                              "agent's notes in the same space. Errors are {error, type}; with a server token, "
                              "every route but /healthz needs 'Authorization: Bearer TOKEN' (or ?token=).")
    app.state.ctx, app.state.engine = ctx, ctx.engine
    for router in (search.router, items.router, memories.router, collection.router, views.router):
        app.include_router(router)

    @app.exception_handler(MMRError)
    async def _domain_error(request: Request, exc: MMRError):
        code = next(c for t, c in STATUS if isinstance(exc, t))
        return JSONResponse({"error": str(exc), "type": type(exc).__name__}, status_code=code)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError):
        said = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}"
                         for e in exc.errors()[:5])
        return JSONResponse({"error": f"bad request: {said}", "type": "UsageError"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        # Starlette's own refusals in our error body; a body that cannot be parsed is a bad argument like any
        # other (422, as the routes declare), not a 400 no route declares.
        code = 422 if exc.status_code == 400 else exc.status_code
        kind = "UsageError" if code == 422 else "NotFound" if code == 404 else "HTTPError"
        return JSONResponse({"error": str(exc.detail), "type": kind}, status_code=code,
                            headers=getattr(exc, "headers", None))

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        if token and request.url.path not in OPEN and not token_matches(
                token, request.headers.get("authorization"), request.query_params.get("token")):
            return JSONResponse(REFUSAL, status_code=401)
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get("/collection", response_class=HTMLResponse, include_in_schema=False)
    def collection_page():
        """Duplicates side by side, clusters as groups of thumbnails, outliers, and the map."""
        return HTMLResponse(COLLECTION_PAGE.read_text(encoding="utf-8"))

    def openapi():
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            # POST /search names its JSON body in openapi_extra (it also takes a form): add the model it names.
            found = SearchRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            parts = schema.setdefault("components", {}).setdefault("schemas", {})
            parts.update(found.pop("$defs", {}))
            parts["SearchRequest"] = found
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
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


SETTINGS_ENV = "MMR_SERVE_SETTINGS"  # how `serve` hands its settings to worker processes


def serve(index: str, *, host: str = "127.0.0.1", port: int = 8000, token: str | None = None,
          max_upload: int = DEFAULT_MAX_UPLOAD, device: str = "cpu", allow_index: Optional[list[str]] = None,
          workers: int = 1, readers: Optional[int] = None) -> None:
    """Serve until stopped, answering up to `readers` requests at once in each process. `workers` > 1: that many
    processes answer on one port, each with its own engines over
    the same files (a compressed index's exact rows and the page cache are shared, not copied); a request
    waits for no other worker's, and every worker sees a commit at its next request."""
    try:
        import uvicorn
    except ImportError:
        raise UsageError("the server needs the optional extra: pip install 'mmretrieval[server]'") from None
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise UsageError(f"workers must be a positive integer, got {workers!r}")
    check_binding(host, token)
    reader_count(readers)
    settings = dict(index=os.fspath(index), token=token, max_upload=max_upload, device=device,
                    allow_index=allow_index, readers=readers)
    if workers == 1:
        app = create_app(**settings)
        warm_up(app.state.engine)
        uvicorn.run(app, host=host, port=port, log_level="warning")
        return
    Engine(index, readonly=True).close()  # a missing or unreadable index fails here, once, not in every worker
    os.environ[SETTINGS_ENV] = json.dumps(settings)  # inherited by the workers uvicorn spawns
    uvicorn.run(f"{__name__}:app_from_settings", factory=True, workers=workers, host=host, port=port,
                log_level="warning")


def app_from_settings():
    """One worker's app (uvicorn calls this in each worker process of `serve(workers=N)`)."""
    app = create_app(**json.loads(os.environ[SETTINGS_ENV]))
    warm_up(app.state.engine)
    return app


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
