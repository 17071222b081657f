"""The collection as a whole: statistics, how relevance is computed, the calibration audit, and indexing a
path under the folders the server was allowed (`mmr serve --allow-index DIR`)."""
# No `from __future__ import annotations`: FastAPI reads the route annotations at run time.

import os
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..context import Context, errors
from ..schemas import Health, IndexOut, IndexRequest

router = APIRouter(tags=["collection"])


def ctx(request: Request) -> Context:
    return request.app.state.ctx


@router.get("/healthz", response_model=Health)
def healthz():
    return {"status": "ok", "worker": os.getpid()}


@router.get("/stats", response_model=dict[str, Any], responses=errors())
def stats(request: Request):
    """What the index holds: its space, counts per modality, notes, size on disk."""
    c = ctx(request)
    with c.reader() as engine:
        return engine.stats()


@router.get("/relevance", response_model=dict[str, Any], responses=errors())
def relevance(request: Request):
    """How relevance is computed for this index: the self-labelled curve per pair of modalities and the
    calibration, if one was fitted (`mmr calibrate`)."""
    c = ctx(request)
    with c.reader() as engine:
        return engine.relevance.describe()


@router.get("/audit", response_model=dict[str, Any], responses=errors())
def audit(request: Request):
    """The calibration audit of the index: best-match vs random cosines per pair of modalities."""
    from ...relevance.audit import audit_index, public

    c = ctx(request)
    with c.reader() as engine:
        return public(audit_index(engine))


@router.get("/audit.png", response_class=Response, responses={
    200: {"content": {"image/png": {}}, "description": "the audit's histograms"}, **errors()})
def audit_png(request: Request):
    from ...relevance.audit import audit_index, plot

    c = ctx(request)
    with c.reader() as engine:
        report = audit_index(engine)
    with tempfile.TemporaryDirectory() as tmp:
        data = plot(report, Path(tmp) / "audit.png").read_bytes()
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.post("/index", response_model=IndexOut, responses=errors(403, 404, 409, 422, 423, 503))
def index(request: Request, body: IndexRequest):
    """Index (incrementally) files or folders under the folders the server may index: new and changed files are
    embedded, removed ones leave the index. Searches go on meanwhile; other writes wait."""
    c = ctx(request)
    paths = [c.under_roots(p) for p in body.paths]
    with c.write_lock:
        r = c.writer().index(paths)
    return {"files_new": r.files_new, "files_changed": r.files_changed, "files_moved": r.files_moved,
            "files_copied": r.files_copied, "files_removed": r.files_removed, "files_unchanged": r.files_unchanged,
            "items_added": dict(r.added), "skipped": [{"path": p, "why": why} for p, why in r.skipped[:100]],
            "skipped_count": len(r.skipped), "seconds": round(r.seconds, 3)}
