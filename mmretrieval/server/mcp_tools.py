"""`mmr mcp`: the index as Model Context Protocol tools, for agents (Claude Desktop, IDEs, agent frameworks).

Over stdio (the client starts `mmr mcp` and speaks JSON-RPC on its stdin and stdout: nothing else may reach
stdout), or streamable HTTP (`mmr mcp --http`: a long-running server at /mcp, with `mmr serve`'s token). The collection is read-only unless `allow_index` names folders that the `index` tool may index; the
agent's own notes (remember, recall, update_memory, forget) are on unless turned off, in the server's scope. Tool results are small
enough for a model's context: hits carry their path, where in the file, a snippet, a time range and relevance,
never vectors; an image item comes back as a thumbnail.

Built on the official SDK (`mcp` >= 2, the ``mcp`` extra): `MCPServer` makes each tool's input schema from its
signature and its description from its docstring, which is what a model reads to choose and call it.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Callable

from ..engine import Engine, Hit
from ..errors import MMRError, UsageError
from ..modalities import get_modality

SNIPPET = 300  # characters of a passage in a hit: enough to judge it, small in a context window
MAX_K = 50


def compact(h: Hit) -> dict[str, Any]:
    """A hit as an agent needs it."""
    out: dict[str, Any] = {"id": h.id, "path": h.path, "modality": h.modality, "where": h.where or None,
                           "relevance": None if h.relevance is None else round(h.relevance, 3),
                           "score": round(h.score, 4)}
    if h.text:
        out["snippet"] = h.text if len(h.text) <= SNIPPET else h.text[:SNIPPET].rstrip() + "…"
    if h.start is not None:
        out["start"], out["end"] = h.start, h.end
    if h.file_modality is not None and h.file_modality != h.modality:
        out["file_modality"] = h.file_modality
    if h.moments:
        out["more_moments"] = [{"id": m.id, "modality": m.modality, "where": m.where or None,
                                "relevance": None if m.relevance is None else round(m.relevance, 3)}
                               for m in h.moments]
    return out


def _k(k: int) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise UsageError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    return k


def _under(path: str, roots: list[Path]) -> Path:
    from .context import resolved

    p = resolved(path)
    if not any(p == r or r in p.parents for r in roots):
        raise UsageError(f"{p} is not under a folder this server may index ({', '.join(map(str, roots))})")
    return p


def _said(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Our errors (a bad argument, an unreadable query file, an unknown id) reach the model with their words,
    as the SDK's ToolError; anything else stays a crash (the SDK says only that the tool failed)."""
    from mcp.server.mcpserver.exceptions import ToolError

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MMRError as e:
            raise ToolError(str(e)) from None

    return call


def build(engine: Engine, *, allow_index: list[str] | None = None, memory: bool = True, user: str | None = None,
          agent: str | None = None) -> Any:
    """The MCP server over `engine` (an `mcp.server.mcpserver.MCPServer`; `.run()` serves it over stdio). With
    `memory`, the agent keeps notes in the index (remember, recall, update_memory, forget), all of them in the
    scope of `user` and `agent` (the server's, not the model's to choose: a model cannot reach another user's
    notes); `engine` must then be writable."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.utilities.types import Image

    from .. import __version__

    roots = [Path(os.path.expanduser(r)).resolve() for r in allow_index or []]
    server = MCPServer(
        name="mmretrieval", version=__version__,
        instructions=("Search the user's own photos, recordings, videos and documents by meaning, in one "
                      "shared space: a text finds images, sounds, video moments and passages; an image or a "
                      "sound finds the rest. Each hit has a relevance in 0..1 comparable across queries (0.5: "
                      "as likely related as not); say when nothing reaches 0.5. Use get_item for a hit's full "
                      "passage or its picture, similar for more like a hit."
                      + (" Keep what you learn that matters later with remember, and recall it before answering "
                         "from memory: recall returns only the notes related to the query." if memory else "")))

    @server.tool()
    @_said
    def search(query: str | None = None, image_path: str | None = None, audio_path: str | None = None,
               types: list[str] | None = None, k: int = 10, min_relevance: float | None = None,
               paths: list[str] | None = None, after: str | None = None, before: str | None = None) -> dict[str, Any]:
        """Search the collection by meaning. Give exactly one of: `query` (text), `image_path` or `audio_path`
        (a file on this machine used as the example). `types` limits the results: image, audio, text
        (passages of documents), video (one hit per video with its best moments). `k` results (1-50), best
        first. `min_relevance` (0..1) drops weaker hits. `paths` keeps files under these folders or matching
        these globs; `after`/`before` (YYYY-MM-DD) keep files by their date (photo taken, else file time).
        Each hit: id (for get_item and similar), path, modality, where in the file (page, section, time),
        snippet (passages), start/end seconds (sound and video), relevance."""
        given = [v for v in (query, image_path, audio_path) if v is not None]
        if len(given) != 1:
            raise UsageError("give exactly one of query, image_path, audio_path")
        filters = {f: v for f, v in (("paths", paths), ("after", after), ("before", before)) if v}
        hits = engine.search(query, image=image_path, audio=audio_path, k=_k(k), types=types,
                             min_relevance=min_relevance, filters=filters or None)
        return {"hits": [compact(h) for h in hits],
                "note": None if any((h.relevance or 0) >= 0.5 for h in hits) else
                "no hit reaches relevance 0.5: these are only the nearest"}

    @server.tool()
    @_said
    def similar(item_id: int, types: list[str] | None = None, k: int = 10) -> dict[str, Any]:
        """More like an indexed item (an id from search): its own vector searched again, the item itself left
        out. `types` as in search."""
        hits = [h for h in engine.search_like(int(item_id), k=_k(k) + 1, types=types) if h.id != int(item_id)]
        return {"hits": [compact(h) for h in hits[:k]]}

    @server.tool(structured_output=False)  # content blocks: the item's JSON, then its picture
    @_said
    def get_item(item_id: int) -> list[Any]:
        """One indexed item by id (from search): its file, where in it, and its content: a passage's whole
        text, or an image's (or a video scene's) thumbnail; sound gives its time range in the file."""
        row = engine.item(int(item_id))
        if row is None:
            raise UsageError(f"no indexed item with id {item_id}")
        info: dict[str, Any] = {"id": row.id, "path": row.path, "modality": row.modality, "locator": row.locator}
        if row.file_modality and row.file_modality != row.modality:
            info["file_modality"] = row.file_modality
        if row.text:
            info["text"] = row.text
        out: list[Any] = [info]
        m = get_modality(row.modality)
        thumb = m.thumbnail(row) if m.thumbnail is not None else None
        if thumb is not None and row.modality == "image":
            _, media_type, make = thumb
            try:
                out.append(Image(data=make(), format=media_type.split("/")[-1]))
            except Exception as e:  # the file changed or went away since it was indexed
                info["thumbnail"] = f"unavailable: {e}"
        return out

    if memory:
        _memory_tools(server, engine, user, agent)

    @server.resource("mmr://index/stats", mime_type="application/json")
    def stats() -> dict[str, Any]:
        """What the index holds: its space, counts per modality, size on disk."""
        return engine.stats()

    if roots:
        @server.tool()
        @_said
        def index(path: str) -> dict[str, Any]:
            """Index (incrementally) a file or folder so that search finds it: new and changed files are
            embedded, removed ones leave the index. Only under the folders this server was started with."""
            r = engine.index([_under(path, roots)])
            return {"files": {"new": r.files_new, "changed": r.files_changed, "moved": r.files_moved,
                              "copied": r.files_copied, "removed": r.files_removed, "unchanged": r.files_unchanged},
                    "items_added": dict(r.added), "seconds": round(r.seconds, 1),
                    "skipped": [{"path": p, "why": why} for p, why in r.skipped[:20]],
                    "skipped_count": len(r.skipped)}

    return server


def _memory_tools(server: Any, engine: Engine, user: str | None, agent: str | None) -> None:
    from ..memory import make_scope

    make_scope(user, agent)  # a bad name is the operator's error, at start-up
    scope = {"user": user or "", "agent": agent or ""}  # none given: the notes of no user and no agent

    @server.tool()
    @_said
    def remember(text: str, session: str | None = None, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """Keep a note for later (a fact about the user, a decision, what was tried): stored in the same space
        as the collection and recalled by meaning. A note that restates an earlier one (same meaning) updates it
        instead of adding a copy; the result says "added" or "updated" and what the earlier note said. One fact
        per note works best. `session` groups notes of one conversation; `metadata` (names to strings, numbers,
        booleans) can filter recall."""
        return engine.remember(text, session=session or None, metadata=metadata, **scope).to_dict()

    @server.tool()
    @_said
    def recall(query: str, k: int = 5, session: str | None = None, recency: float = 0.0,
               metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """The notes most related in meaning to `query`, best first: only the relevant ones, not everything
        remembered. `session` limits them to one conversation's; `metadata` to notes with those values;
        `recency` (0..1) prefers newer notes (0: meaning only). Each note: id (for update_memory and forget),
        text, session, metadata, updated, relevance (0..1)."""
        found = engine.recall(query, k=_k(k), session=session, recency=recency, metadata=metadata, **scope)
        return {"memories": [{k_: v for k_, v in m.to_dict().items() if k_ not in ("user", "agent", "created")}
                             for m in found]}

    @server.tool()
    @_said
    def update_memory(memory_id: int, text: str | None = None,
                      metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """Correct a note (an id from recall): new text replaces the old, metadata is merged in."""
        return engine.update_memory(int(memory_id), text, metadata=metadata, **scope).to_dict()

    @server.tool()
    @_said
    def forget(memory_id: int | None = None, session: str | None = None) -> dict[str, Any]:
        """Forget one note (its id from recall), or every note of a `session`."""
        if (memory_id is None) == (session is None):
            raise UsageError("give exactly one of memory_id, session")
        return {"forgotten": engine.forget(memory_id, session=session, **scope)}


def _writable(index: str | os.PathLike, memory: bool, allow_index: list[str] | None) -> bool:
    """Whether to open the index for writing: for notes or indexing, where this user may write there (else the
    memory tools are left out, said on stderr: a shared read-only index still answers searches)."""
    import sys

    if not (memory or allow_index):
        return False
    if os.access(Path(os.path.expanduser(index)), os.W_OK):
        return True
    if allow_index:
        raise UsageError(f"--allow-index needs to write to the index at {index}, and this user may not")
    print(f"mmr mcp: {index} is read-only for this user: serving without the memory tools", file=sys.stderr)
    return False


def serve_stdio(index: str | os.PathLike, *, allow_index: list[str] | None = None, memory: bool = True,
                user: str | None = None, agent: str | None = None, device: str = "cpu") -> None:
    """Serve `index` over stdio until the client closes it."""
    writable = _writable(index, memory, allow_index)
    memory = memory and writable
    with Engine(index, readonly=not writable, device=device) as engine:
        build(engine, allow_index=allow_index, memory=memory, user=user, agent=agent).run("stdio")


def serve_http(index: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
               allow_index: list[str] | None = None, memory: bool = True, user: str | None = None,
               agent: str | None = None, device: str = "cpu") -> None:
    """Serve `index` over streamable HTTP at http://HOST:PORT/mcp; with `token`, every request must carry it
    (as `mmr serve` checks it); beyond loopback a token is required."""
    import uvicorn

    from .auth import RequireToken, check_binding

    check_binding(host, token)
    writable = _writable(index, memory, allow_index)
    memory = memory and writable
    with Engine(index, readonly=not writable, device=device) as engine:
        app = build(engine, allow_index=allow_index, memory=memory, user=user, agent=agent).streamable_http_app(
            host=host)
        uvicorn.run(RequireToken(app, token) if token else app, host=host, port=port, log_level="warning")
