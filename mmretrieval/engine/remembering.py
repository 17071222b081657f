"""An engine's agent memory (see `memory`): remember, recall, update, forget and list notes kept in the index's
own space. Writes take the writer's lock as indexing does; recall is a reader and never blocks on a writer."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..catalog import ItemRecord
from ..encoders.passages import split_passages
from ..errors import MemoryNotFoundError, UsageError
from ..index.vectors_stream import unit_rows
from ..memory import (MERGE_COSINE, HALF_LIFE_DAYS, Memory, Remembered, Scope, check_metadata, check_text,
                      check_weight, recall_score, same_words)
from ..query import make_query

if TYPE_CHECKING:
    from .facade import Engine

MERGE_CANDIDATES = 5   # memories of the scope whose restatement a new text may be, by their best passage


def _memory(row: dict[str, Any], **scores: Any) -> Memory:
    return Memory(id=row["id"], text=row["text"], scope=Scope(row["user"], row["agent"], row["session"]),
                  metadata=row["metadata"], created=row["created"], updated=row["updated"], embedded=row["embedded"],
                  **scores)


class Memories:
    """The memory of one engine's index."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ----------------------------------------------------------------- writing
    def remember(self, text: str, *, scope: Scope | None = None, metadata: dict[str, Any] | None = None,
                 merge: bool = True, merge_above: float | None = None) -> Remembered:
        """`Engine.remember`."""
        text, metadata = check_text(text), check_metadata(metadata)
        scope = (scope or Scope()).stored()
        threshold = MERGE_COSINE if merge_above is None else float(merge_above)
        if not -1.0 <= threshold <= 1.0:
            raise UsageError(f"merge_above is a cosine from -1 to 1, got {merge_above!r}")
        self._text_tower()  # the model loads before the lock is taken: others wait for an encode, not a load
        with self.engine.writer.writing():
            # inside the lock: the engine has followed any switch to another space, and embeds in that one
            items, vecs = self._embed(text)
            cat = self.engine.store.catalog
            self.embed_pending()
            restated = self._restated(text, vecs, scope, threshold) if merge else None
            now = time.time()
            self.engine.store.begin()
            try:
                if restated is None:
                    memory_id = cat.add_memory(scope, text, metadata, now)
                else:
                    memory_id, old_text, cosine = restated
                    old = cat.memories(ids=[memory_id])[0]
                    cat.update_memory(memory_id, text, {**old["metadata"], **metadata}, now)
                    self.engine.store.vectors.remove(cat.detach_memory(memory_id))
                self._attach(memory_id, items, vecs)
                self.engine.store.checkpoint()
            except BaseException:
                cat.rollback()
                raise
            row = cat.memories(ids=[memory_id])[0]
        if restated is None:
            return Remembered(_memory(row), "added")
        return Remembered(_memory(row), "updated", replaced=old_text, cosine=cosine)

    def update(self, memory_id: int, text: str | None = None, *, metadata: dict[str, Any] | None = None,
               scope: Scope | None = None) -> Memory:
        """`Engine.update_memory`."""
        if text is None and metadata is None:
            raise UsageError("give the memory's new text, new metadata, or both")
        text = check_text(text) if text is not None else None
        metadata = check_metadata(metadata) if metadata is not None else None
        if text is not None:
            self._text_tower()
        with self.engine.writer.writing():
            embedded = self._embed(text) if text is not None else None
            cat = self.engine.store.catalog
            old = self._one(memory_id, scope)
            self.engine.store.begin()
            try:
                cat.update_memory(old["id"], text if text is not None else old["text"],
                                  {**old["metadata"], **metadata} if metadata is not None else None, time.time())
                if embedded is not None:
                    self.engine.store.vectors.remove(cat.detach_memory(old["id"]))
                    self._attach(old["id"], *embedded)
                self.engine.store.checkpoint()
            except BaseException:
                cat.rollback()
                raise
            return _memory(cat.memories(ids=[old["id"]])[0])

    def forget(self, memory_id: int | None = None, *, scope: Scope | None = None,
               metadata: dict[str, Any] | None = None, everything: bool = False) -> int:
        """`Engine.forget`."""
        scope = scope or Scope()
        metadata = check_metadata(metadata)
        if memory_id is None and not scope.given() and not metadata and not everything:
            raise UsageError("name the memory to forget (its id), or a user, agent, session or metadata whose "
                             "memories to forget; forgetting every memory needs everything=True (--all)")
        with self.engine.writer.writing():
            cat = self.engine.store.catalog
            ids = [self._one(memory_id, scope)["id"]] if memory_id is not None else \
                [r["id"] for r in cat.memories(scope, metadata)]
            if not ids:
                return 0
            self.engine.store.begin()
            try:
                gone = [cat.delete_memory(i) for i in ids]
                self.engine.store.vectors.remove(np.concatenate(gone))
                self.engine.store.checkpoint()
            except BaseException:
                cat.rollback()
                raise
            return len(ids)

    def embed_pending(self) -> int:
        """Embed the memories whose vectors were lost (a repair forgets items without vectors; a memory has no
        file to embed again, so its text is). Call holding the writer's lock. Returns how many."""
        cat = self.engine.store.catalog
        pending = cat.memories(pending=True)
        if not pending:
            return 0
        self.engine.store.begin()
        try:
            for row in pending:
                self._attach(row["id"], *self._embed(row["text"]))
            self.engine.store.checkpoint()
        except BaseException:
            cat.rollback()
            raise
        return len(pending)

    def add_embedded(self, memories: list[dict[str, Any]]) -> int:
        """Memories with their passages' vectors made in this space (an export's): each a dict of text, user,
        agent, session, metadata, created, updated, items (`ItemRecord`s) and vectors. Returns how many."""
        with self.engine.writer.writing():
            cat = self.engine.store.catalog
            self.engine.store.begin()
            try:
                for m in memories:
                    memory_id = cat.add_memory(Scope(m["user"], m["agent"], m["session"]), m["text"],
                                               m["metadata"], m["created"])
                    cat.update_memory(memory_id, m["text"], None, m["updated"])
                    self._attach(memory_id, m["items"], m["vectors"])
                self.engine.store.checkpoint()
            except BaseException:
                cat.rollback()
                raise
        return len(memories)

    # ----------------------------------------------------------------- reading
    def recall(self, query: str | None = None, *, image: Any = None, audio: Any = None, k: int = 5,
               scope: Scope | None = None, metadata: dict[str, Any] | None = None, recency: float = 0.0,
               half_life_days: float = HALF_LIFE_DAYS, after: float | None = None,
               before: float | None = None) -> list[Memory]:
        """`Engine.recall`."""
        q = make_query(text=query, image=image, audio=audio, k=k, types="text")
        weight, metadata = check_weight(recency), check_metadata(metadata)
        if not half_life_days > 0:
            raise UsageError(f"half_life_days must be positive, got {half_life_days!r}")
        vec = self.engine.encode_query(q)
        cat = self.engine.store.catalog
        now = time.time()
        with self.engine._lock:
            if not self.engine.store.holds_lock:  # another process may have committed since
                self.engine.store.refresh_vectors(self.engine.dim)
            from ..index.vector_index import IdFilter

            item_ids, memory_of = cat.memory_items(scope, metadata, after, before)
            if not item_ids.size:
                return []
            rows = {r["id"]: r for r in cat.memories(ids=np.unique(memory_of).tolist())}
            owner = dict(zip(item_ids.tolist(), memory_of.tolist()))
            allowed = IdFilter(item_ids)
            fetch = min(item_ids.size, max(8 * q.k, 64))
            while True:
                # Exact under a recency weight too: a memory not fetched has a cosine at most the lowest fetched,
                # and its score at most its cosine; once the k-th score reaches that, no unfetched one can pass it.
                scores, ids = self.engine.store.vectors.search(vec[None, :], fetch, allowed=allowed)
                best: dict[int, float] = {}
                for s, i in zip(scores[0], ids[0]):
                    if i >= 0 and owner.get(int(i)) is not None:
                        m = owner[int(i)]
                        best[m] = max(best.get(m, -2.0), float(s))
                ranked = sorted(((recall_score(c, now - rows[m]["updated"], weight, half_life_days), m, c)
                                 for m, c in best.items()), reverse=True)
                lowest = float(scores[0][ids[0] >= 0].min()) if (ids[0] >= 0).any() else -1.0
                if fetch >= item_ids.size or (len(ranked) >= q.k and ranked[q.k - 1][0] >= lowest):
                    break
                fetch = min(item_ids.size, fetch * 4)
            ranked = ranked[:q.k]
            cos = np.array([c for _, _, c in ranked])
            rel = self.engine.relevance.relevance(vec, q.modality, ["text"] * len(ranked), cos) if ranked \
                else np.empty(0)
        return [_memory(rows[m], score=s, cosine=c, relevance=None if np.isnan(r) else float(r))
                for (s, m, c), r in zip(ranked, rel)]

    def list(self, *, scope: Scope | None = None, metadata: dict[str, Any] | None = None,
             after: float | None = None, before: float | None = None, limit: int | None = None) -> list[Memory]:
        """`Engine.memories`."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise UsageError(f"limit must be a positive integer, got {limit!r}")
        rows = self.engine.store.catalog.memories(scope, check_metadata(metadata), after=after, before=before,
                                                  limit=limit)
        return [_memory(r) for r in rows]

    # ----------------------------------------------------------------- parts
    def _one(self, memory_id: Any, scope: Scope | None) -> dict[str, Any]:
        if isinstance(memory_id, bool) or not isinstance(memory_id, (int, np.integer)):
            if not (isinstance(memory_id, str) and memory_id.isdigit()):
                raise UsageError(f"a memory id is an integer, got {memory_id!r}")
        rows = self.engine.store.catalog.memories(scope, ids=[int(memory_id)])
        if not rows:
            raise MemoryNotFoundError(f"no memory {memory_id}" + (" in this scope" if scope and scope.given() else ""))
        return rows[0]

    def _text_tower(self) -> Any:
        enc = self.engine.space.text
        if enc is None:
            raise UsageError(f"space {self.engine.spec.name!r} has no text tower, so it cannot keep memories")
        return enc

    def _embed(self, text: str) -> tuple[list[ItemRecord], np.ndarray]:
        """A memory's passages (as a document's are cut for this text tower) and their vectors."""
        enc = self._text_tower()
        cut = split_passages(text, enc.count_tokens, enc.max_passage_tokens)
        return [ItemRecord(p.locator(), p.text, "text") for p in cut], enc.encode([p.text for p in cut])

    def _attach(self, memory_id: int, items: list[ItemRecord], vecs: np.ndarray) -> None:
        fingerprint = (self.engine.store.space_record() or {}).get("fingerprint")
        ids = self.engine.store.catalog.attach_memory(memory_id, fingerprint, items)
        self.engine.store.vectors.add(ids, np.asarray(vecs, np.float32))

    def _restated(self, text: str, vecs: np.ndarray, scope: Scope, threshold: float) -> tuple[int, str, float] | None:
        """The memory of exactly this scope that `text` restates (same words, or its passages' mean vector at
        `threshold` or closer to that memory's), with its text and the cosine; None: a new memory."""
        cat, vectors = self.engine.store.catalog, self.engine.store.vectors
        item_ids, memory_of = cat.memory_items(Scope(*scope.values()))  # every field given: exactly this scope
        if not item_ids.size:
            return None
        from ..index.vector_index import IdFilter

        _, found = vectors.search(np.asarray(vecs, np.float32), min(item_ids.size, 4 * MERGE_CANDIDATES),
                                  allowed=IdFilter(item_ids))
        owner = dict(zip(item_ids.tolist(), memory_of.tolist()))
        candidates: list[int] = []
        for i in found.ravel():
            m = owner.get(int(i))
            if m is not None and m not in candidates:
                candidates.append(m)
        mine = unit_rows(np.asarray(vecs, np.float32).mean(axis=0))
        best: tuple[int, str, float] | None = None
        for row in cat.memories(ids=candidates[:MERGE_CANDIDATES]):
            theirs = item_ids[memory_of == row["id"]]
            cosine = float(unit_rows(vectors.reconstruct(theirs).mean(axis=0)) @ mine)
            if same_words(row["text"], text):
                return row["id"], row["text"], cosine
            if cosine >= threshold and (best is None or cosine > best[2]):
                best = (row["id"], row["text"], cosine)
        return best
