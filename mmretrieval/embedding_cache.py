"""Vectors that left the index, kept so that they are never made again (`INDEX/embeddings-cache.sqlite`).

When a file leaves the index (removed, changed, gone from its folder), its items and their vectors are kept
here under (space fingerprint, content hash, item options), with the metadata its decoding found and the tower
(and precision) that made each of its item modalities. A file whose content comes back (a folder re-added, an
edit undone, a file restored from a backup) is committed from here: no decoding, no encoding. In another space
too (the index migrated since), where that space has the same towers for those modalities. An entry leaves the
cache when its vectors are back in the index, or when the cache outgrows its bound (least recently used first;
`MMR_EMBEDDING_CACHE`, bytes like 512M, default 512 MB, 0: off).

Best effort by design: it lives beside the catalog, not in its transactions. An entry written for a change that
then rolled back only duplicates vectors the index holds (the index's own copy of a content is reused first),
and a lost write only costs an encoding.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

DEFAULT_LIMIT = 512 * 1024 * 1024
FILE = "embeddings-cache.sqlite"


def limit_bytes() -> int:
    from .index.choose import parse_bytes

    raw = os.environ.get("MMR_EMBEDDING_CACHE", "").strip()
    return DEFAULT_LIMIT if not raw else parse_bytes(raw)


def key(fingerprint: str, content_hash: str, modality: str, options: dict[str, Any]) -> str:
    """A file's items depend on its content, the modality that reads it, the space, and the index's item options."""
    return f"{fingerprint}:{content_key(content_hash, modality, options)}"


def content_key(content_hash: str, modality: str, options: dict[str, Any]) -> str:
    """What a file's items are, whatever space encodes them."""
    return f"{content_hash}:{modality}:{json.dumps(options, sort_keys=True)}"


class EmbeddingCache:
    def __init__(self, path: str | os.PathLike, limit: int | None = None) -> None:
        self.path = Path(path)
        self.limit = limit_bytes() if limit is None else limit
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, items TEXT NOT NULL, "
                       "vectors BLOB NOT NULL, dim INTEGER NOT NULL, meta TEXT, bytes INTEGER NOT NULL, "
                       "used REAL NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS entries_used ON entries(used)")
            columns = {r[1] for r in db.execute("PRAGMA table_info(entries)")}
            for column in ("content", "towers") if "content" not in columns else ():  # caches made before
                db.execute(f"ALTER TABLE entries ADD COLUMN {column} TEXT")
            db.execute("CREATE INDEX IF NOT EXISTS entries_content ON entries(content)")
            db.execute("CREATE TABLE IF NOT EXISTS counts (name TEXT PRIMARY KEY, n INTEGER NOT NULL)")
            self._db = db
        return self._db

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def put(self, key: str, items: list[tuple], vectors: np.ndarray, meta: dict[str, Any] | None, *,
            content: str | None = None, towers: dict[str, str] | None = None) -> None:
        """Keep a file's items (locator, text, modality) and vectors; the oldest entries go past the bound.
        `content` (`content_key`) and `towers` (item modality -> the tower that made its vectors) let another
        space with those towers find them (`get`)."""
        if not self.enabled or not items:
            return
        vecs = np.ascontiguousarray(vectors, np.float32)
        body = json.dumps([list(i) for i in items])
        size = vecs.nbytes + len(body) + len(key)
        if size > self.limit:
            return
        with self._lock, self._bounded() as db:
            db.execute("INSERT OR REPLACE INTO entries (key, items, vectors, dim, meta, bytes, used, content, "
                       "towers) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (key, body, vecs.tobytes(), vecs.shape[1], json.dumps(meta) if meta else None, size,
                        time.time(), content if towers else None, json.dumps(towers) if towers else None))

    @contextmanager
    def _bounded(self) -> Iterator[sqlite3.Connection]:
        """One transaction, after which the least recently used entries go until the cache fits its bound."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            total = db.execute("SELECT COALESCE(SUM(bytes), 0) FROM entries").fetchone()[0]
            while total > self.limit:
                old, n = db.execute("SELECT key, bytes FROM entries ORDER BY used LIMIT 1").fetchone()
                db.execute("DELETE FROM entries WHERE key=?", (old,))
                total -= n
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def get(self, key: str, *, content: str | None = None, towers: dict[str, str] | None = None
            ) -> tuple[list[tuple], np.ndarray, dict[str, Any] | None] | None:
        """A file's items and vectors kept under `key`, or None (counted once, as a hit or a miss). With
        `content` (`content_key`) and `towers` (item modality -> tower, the asking space's), an entry made in
        another space also serves where every one of its item modalities was made by the tower named here:
        the same vectors would come out."""
        if not self.enabled or (self._db is None and not self.path.exists()):
            return None
        with self._lock:
            db = self.db
            row = db.execute("SELECT items, vectors, dim, meta FROM entries WHERE key=?", (key,)).fetchone()
            if row is None and content and towers:
                for other, made_by in db.execute("SELECT key, towers FROM entries WHERE content=?", (content,)):
                    if all(towers.get(m) == t for m, t in json.loads(made_by).items()):
                        key = other
                        row = db.execute("SELECT items, vectors, dim, meta FROM entries WHERE key=?",
                                         (key,)).fetchone()
                        break
            self._count("hits" if row is not None else "misses")
            if row is None:
                return None
            db.execute("UPDATE entries SET used=? WHERE key=?", (time.time(), key))
        items = [tuple(i) for i in json.loads(row[0])]
        vectors = np.frombuffer(row[1], np.float32).reshape(-1, row[2]).copy()
        return items, vectors, json.loads(row[3]) if row[3] else None

    def copy_to(self, path: str | os.PathLike) -> dict[str, Any]:
        """Write the whole cache to a new file at `path` (an export); returns its entries and bytes."""
        with self._lock:
            dst = sqlite3.connect(path)
            try:
                self.db.backup(dst)
            finally:
                dst.close()
        st = self.stats()
        return {"entries": st["entries"], "bytes": st["bytes"]}

    def merge_from(self, path: str | os.PathLike) -> int:
        """Take in the entries of another cache file (an import) that this one lacks, within the bound (the
        least recently used go first). Returns the entries taken in."""
        if not self.enabled:
            return 0
        with self._lock:
            db = self.db
            db.execute("ATTACH DATABASE ? AS other", (str(path),))
            try:
                with self._bounded():
                    before = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
                    cols = {r[1] for r in db.execute("PRAGMA other.table_info(entries)")}
                    shared = "content, towers" if "content" in cols else "NULL, NULL"
                    db.execute("INSERT OR IGNORE INTO entries (key, items, vectors, dim, meta, bytes, used, content, "
                               f"towers) SELECT key, items, vectors, dim, meta, bytes, used, {shared} "
                               "FROM other.entries")
                    added = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0] - before
            finally:
                db.execute("DETACH DATABASE other")
        return int(added)

    def discard(self, key: str) -> None:
        """Its vectors are in the index again."""
        if self._db is None and not self.path.exists():
            return
        with self._lock:
            self.db.execute("DELETE FROM entries WHERE key=?", (key,))

    def _count(self, name: str) -> None:
        self.db.execute("INSERT INTO counts VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET n = n + 1", (name,))

    def stats(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"entries": 0, "bytes": 0, "limit": self.limit, "hits": 0, "misses": 0}
        with self._lock:
            n, size = self.db.execute("SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM entries").fetchone()
            counts = dict(self.db.execute("SELECT name, n FROM counts").fetchall())
        return {"entries": n, "bytes": size, "limit": self.limit, "hits": counts.get("hits", 0),
                "misses": counts.get("misses", 0)}

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
