"""An agent's memory over HTTP: remember, recall, list, update, forget (see `memory`). Reads go through the
reading engine; writes through the writer, and need the server's token."""
# No `from __future__ import annotations`: FastAPI reads the route annotations at run time.

from typing import Optional

from fastapi import APIRouter, Query, Request

from ..context import Context, errors
from ..schemas import Forgotten, MemoryOut, RecallRequest, RememberedOut, RememberRequest, UpdateRequest

router = APIRouter(tags=["memories"])
OUT = {"response_model_exclude_none": True}
WRITES = errors(403, 404, 409, 422, 423, 503)


def ctx(request: Request) -> Context:
    return request.app.state.ctx


@router.post("/memories", response_model=RememberedOut, responses=WRITES, **OUT)
def remember(request: Request, body: RememberRequest):
    """Keep a note; a restatement of a note of the same scope updates it (action "updated", with the text it
    replaced)."""
    c = ctx(request)
    with c.write_lock:
        return c.writer().remember(body.text, user=body.user, agent=body.agent, session=body.session,
                                   metadata=body.metadata, merge=body.merge, merge_above=body.merge_above).to_dict()


@router.post("/memories/recall", response_model=list[MemoryOut], responses=errors(409, 422, 503), **OUT)
def recall(request: Request, body: RecallRequest):
    """The notes closest in meaning to the query, among those of the scope given (each of user, agent,
    session given must match exactly)."""
    c = ctx(request)
    with c.reader() as engine:
        found = engine.recall(body.query, k=body.k, user=body.user, agent=body.agent, session=body.session,
                                metadata=body.metadata, recency=body.recency, half_life_days=body.half_life_days)
    return [m.to_dict() for m in found]


@router.get("/memories", response_model=list[MemoryOut], responses=errors(422), **OUT)
def memories(request: Request, user: Optional[str] = Query(None), agent: Optional[str] = Query(None),
             session: Optional[str] = Query(None), limit: Optional[int] = Query(None)):
    """The notes of a scope, most recently updated first."""
    c = ctx(request)
    with c.reader() as engine:
        return [m.to_dict() for m in engine.memories(user=user, agent=agent, session=session, limit=limit)]


@router.patch("/memories/{memory_id}", response_model=MemoryOut, responses=WRITES, **OUT)
def update(request: Request, memory_id: int, body: UpdateRequest):
    """New text (embedded again) and/or metadata (merged in); the note must be in the scope given."""
    c = ctx(request)
    with c.write_lock:
        return c.writer().update_memory(memory_id, body.text, metadata=body.metadata, user=body.user,
                                        agent=body.agent, session=body.session).to_dict()


@router.delete("/memories/{memory_id}", response_model=Forgotten, responses=errors(403, 404, 422, 423))
def forget(request: Request, memory_id: int, user: Optional[str] = Query(None), agent: Optional[str] = Query(None),
           session: Optional[str] = Query(None)):
    """Forget one note; it must be in the scope given."""
    c = ctx(request)
    with c.write_lock:
        return {"forgotten": c.writer().forget(memory_id, user=user, agent=agent, session=session)}
