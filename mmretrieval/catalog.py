"""The SQLite catalog beside the vector index: files, their items, hashes, skips and the space.

Item ids are the FAISS ids. They are never reused (AUTOINCREMENT), so a vector left behind by a
crash can never be mistaken for a newer item.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, NamedTuple

import numpy as np

from .errors import IndexNotFoundError, MMRError

SCHEMA_VERSION = 3  # 2: files.date, date_source, ext, tags (filters, sorting) and the keyword index (fts); 3: memories
MEMORY = "memory"  # the file modality of an agent's memory: a row of `memories`, not a file on disk
BRIDGED = "bridged:"  # files.space of a file whose vectors a bridge carried from the space before (+ its fingerprint)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    modality TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    hash TEXT,
    status TEXT NOT NULL CHECK (status IN ('indexed', 'skipped')),
    error TEXT,
    space TEXT,
    indexed_at REAL NOT NULL,
    date REAL,
    date_source TEXT,
    ext TEXT,
    tags TEXT
);
CREATE INDEX IF NOT EXISTS files_hash ON files(hash);
CREATE INDEX IF NOT EXISTS files_date ON files(date);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    modality TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    locator TEXT,
    text TEXT
);
CREATE INDEX IF NOT EXISTS items_file ON items(file_id);
CREATE INDEX IF NOT EXISTS items_modality ON items(modality);
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(body, tokenize = 'unicode61 remove_diacritics 2');
CREATE TABLE IF NOT EXISTS memories (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    file_id INTEGER UNIQUE REFERENCES files(id) ON DELETE SET NULL,
    user TEXT NOT NULL DEFAULT '',
    agent TEXT NOT NULL DEFAULT '',
    session TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL,
    metadata TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS memories_scope ON memories(user, agent, session)
"""


_FILE_COLS = "id, path, modality, size, mtime_ns, hash, status, error, space"


def in_range(ids: Iterable[int]) -> list[int]:
    """The ids SQLite can hold (64-bit signed): any other names nothing here (a request's 2**63 is unknown, not
    an overflow)."""
    return [i for i in map(int, ids) if -(1 << 63) <= i < 1 << 63]


def extension(path: str) -> str:
    """The lower-case extension without the dot ('' for none): what `--ext` matches."""
    return os.path.splitext(path)[1].lower().lstrip(".")


class ItemRecord(NamedTuple):
    """An item as it is written: where it sits in its file, its text (passages), and its modality (None: the
    file's). A file's items may be of several modalities (a document's passages and figures)."""

    locator: dict[str, Any]
    text: str | None
    modality: str | None = None


def item_modality(item: tuple, file_modality: str) -> str:
    """An item's modality: its own, else its file's (items given as (locator, text) pairs)."""
    return (item[2] if len(item) > 2 else None) or file_modality


@dataclass(frozen=True)
class FileRow:
    id: int
    path: str
    modality: str
    size: int
    mtime_ns: int
    hash: str | None
    status: str
    error: str | None
    space: str | None

    @property
    def bridged(self) -> bool:
        """Its vectors came through a bridge from the space switched away from: to be embedded again."""
        return bool(self.space) and self.space.startswith(BRIDGED)


@dataclass(frozen=True)
class ItemRow:
    id: int
    file_id: int
    path: str
    modality: str
    ordinal: int
    locator: dict[str, Any]
    text: str | None
    date: float | None = None     # the file's date (EXIF/tag, else mtime), seconds since the epoch
    file_modality: str | None = None  # its file's: a video's scene is an image item of a video file
    approximate: bool = False     # its vector came through a bridge (`FileRow.bridged`)


class IndexedContents(Mapping[str, FileRow]):
    """Indexed files by content hash, looked up in the catalog one hash at a time (no scan of every file)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def __getitem__(self, hash: str) -> FileRow:
        row = self.catalog.indexed_file_with_hash(hash)
        if row is None:
            raise KeyError(hash)
        return row

    def __iter__(self) -> Iterator[str]:
        return (r[0] for r in self.catalog.db.execute(
            f"SELECT DISTINCT hash FROM files WHERE {_REAL_VECTORS}"))

    def __len__(self) -> int:
        return int(self.catalog.db.execute(
            f"SELECT COUNT(DISTINCT hash) FROM files WHERE {_REAL_VECTORS}").fetchone()[0])


# Files whose content hash names real vectors (a copy or a move may reuse them): a bridged file's are approximate.
_REAL_VECTORS = f"status='indexed' AND hash IS NOT NULL AND (space IS NULL OR space NOT LIKE '{BRIDGED}%')"
MMAP_BYTES = 1 << 30  # address space, not memory: pages are read in as touched


class Catalog:
    FILE = "catalog.sqlite"

    def __init__(self, path: str | Path, *, create: bool = False, readonly: bool = False) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise IndexNotFoundError(f"no catalog at {self.path}")
        if readonly:
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30, check_same_thread=False)
        else:
            self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        # Reads through a memory map instead of a read() per page: a search's rows for 10 random items of a 1 M-item
        # catalog (137 MB) took 1.9 ms, 0.2 ms mapped. Writes still go through SQLite's pager and journal.
        self.db.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        self.db.row_factory = sqlite3.Row
        self.db.isolation_level = None  # explicit transactions only
        if create:
            with self.transaction():
                for stmt in _SCHEMA.split(";"):  # executescript() would commit behind our back
                    if stmt.strip():
                        self.db.execute(stmt)
                if self.get_meta("schema_version") is None:
                    self.set_meta("schema_version", str(SCHEMA_VERSION))
        version = self.get_meta("schema_version")
        if version is None:
            raise IndexNotFoundError(f"{self.path} is not an mmretrieval catalog")
        if int(version) > SCHEMA_VERSION:
            raise MMRError(f"catalog schema {version} is newer than this mmretrieval understands ({SCHEMA_VERSION}); upgrade")
        if int(version) < 2 and not readonly:
            self._migrate_to_2()
        if int(self.get_meta("schema_version") or 0) < 3 and not readonly:
            self._migrate_to_3()
        self.version = int(self.get_meta("schema_version") or SCHEMA_VERSION)

    def _migrate_to_2(self) -> None:
        """Dates and extensions for filters: the file's mtime until a file is indexed again (its EXIF or tag
        date is read then)."""
        with self.transaction():
            for col in ("date REAL", "date_source TEXT", "ext TEXT", "tags TEXT"):
                self.db.execute(f"ALTER TABLE files ADD COLUMN {col}")
            self.db.execute("UPDATE files SET date = mtime_ns / 1e9, date_source = 'mtime'")
            rows = self.db.execute("SELECT id, path FROM files").fetchall()
            self.db.executemany("UPDATE files SET ext=? WHERE id=?", [(extension(r[1]), r[0]) for r in rows])
            self.db.execute("CREATE INDEX IF NOT EXISTS files_date ON files(date)")
            self.db.execute(_SCHEMA[_SCHEMA.index("CREATE VIRTUAL TABLE"):].split(";")[0])
            self._index_words()
            self.set_meta("schema_version", "2")

    def _migrate_to_3(self) -> None:
        """An agent's memories (nothing else changes)."""
        with self.transaction():
            for stmt in _SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS memories"):].split(";"):
                if stmt.strip():
                    self.db.execute(stmt)
            self.set_meta("schema_version", "3")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self.db.in_transaction:
            yield
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")

    def begin(self) -> None:
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        if self.db.in_transaction:
            self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    # --- meta
    def get_meta(self, key: str) -> str | None:
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        except sqlite3.DatabaseError:
            return None
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                        (key, value))

    def delete_meta(self, key: str) -> None:
        self.db.execute("DELETE FROM meta WHERE key=?", (key,))

    # --- files
    def files(self, under: Iterable[str] | None = None) -> dict[str, FileRow]:
        """Every file, or those at or below the paths `under` (each one an index range, not a scan)."""
        if under is None:
            return {r["path"]: FileRow(**dict(r)) for r in self.db.execute(f"SELECT {_FILE_COLS} FROM files")}
        out: dict[str, FileRow] = {}
        for root in under:
            top = root.rstrip("/")
            # Below `top/` in the path index's order: from "top/" up to "top0" ('0' follows '/').
            rows = self.db.execute(f"SELECT {_FILE_COLS} FROM files WHERE path=? OR (path>=? AND path<?)",
                                   (top or "/", top + "/", top + "0"))
            out.update((r["path"], FileRow(**dict(r))) for r in rows)
        return out

    def indexed_file_with_hash(self, hash: str) -> FileRow | None:
        r = self.db.execute(f"SELECT {_FILE_COLS} FROM files WHERE hash=? AND {_REAL_VECTORS} LIMIT 1",
                            (hash,)).fetchone()
        return None if r is None else FileRow(**dict(r))

    def file_facts(self, file_ids: Iterable[int]) -> dict[int, tuple[int, str | None, float | None]]:
        """(size, content hash, date) of each file id: what ranks the copies of a near-duplicate group."""
        ids, out = in_range(file_ids), {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            for r in self.db.execute(f"SELECT id, size, hash, {self._date.replace('f.', '')} FROM files "
                                     f"WHERE id IN ({','.join('?' * len(chunk))})", chunk):
                out[int(r[0])] = (int(r[1]), r[2], r[3])
        return out

    def copies(self) -> list[list[int]]:
        """Indexed files that share a content hash (byte-for-byte copies), as lists of file ids; notes left out."""
        rows = self.db.execute(
            "SELECT GROUP_CONCAT(id) FROM files WHERE status='indexed' AND hash IS NOT NULL AND modality != ? "
            "GROUP BY hash HAVING COUNT(*) > 1", (MEMORY,))
        return [sorted(int(i) for i in r[0].split(",")) for r in rows]

    def file(self, path: str) -> FileRow | None:
        r = self.db.execute(f"SELECT {_FILE_COLS} FROM files WHERE path=?", (path,)).fetchone()
        return None if r is None else FileRow(**dict(r))

    def upsert_file(self, path: str, modality: str, size: int, mtime_ns: int, hash: str | None, status: str,
                    error: str | None = None, space: str | None = None, date: float | None = None,
                    date_source: str | None = None, tags: Iterable[str] = ()) -> int:
        """`date`: when the content was made (EXIF, a tag); None: the file's mtime stands in."""
        if date is None:
            date, date_source = mtime_ns / 1e9, "mtime"
        row = self.db.execute(
            "INSERT INTO files(path, modality, size, mtime_ns, hash, status, error, space, indexed_at, date, "
            "date_source, ext, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET "
            "modality=excluded.modality, size=excluded.size, mtime_ns=excluded.mtime_ns, hash=excluded.hash, "
            "status=excluded.status, error=excluded.error, space=excluded.space, indexed_at=excluded.indexed_at, "
            "date=excluded.date, date_source=excluded.date_source, ext=excluded.ext, tags=excluded.tags RETURNING id",
            (path, modality, size, mtime_ns, hash, status, error, space, time.time(), date, date_source,
             extension(path), "\n".join(tags) or None)).fetchone()
        return int(row[0])

    def move_file(self, file_id: int, new_path: str, size: int, mtime_ns: int) -> None:
        """A known content at a new path: the date stays unless it was the mtime."""
        self.db.execute("UPDATE files SET path=?, size=?, mtime_ns=?, ext=?, date=CASE WHEN date_source='mtime' "
                        "THEN ? / 1e9 ELSE date END WHERE id=?",
                        (new_path, size, mtime_ns, extension(new_path), mtime_ns, file_id))
        self._index_words(file_id)  # the path's words changed

    def copy_metadata(self, src_id: int, dst_id: int) -> None:
        """A copy of known content takes its tags and its EXIF/tag date (an mtime-based date stays the copy's own)."""
        self.db.execute("UPDATE files SET tags = (SELECT tags FROM files WHERE id = ?) WHERE id = ?", (src_id, dst_id))
        self.db.execute("UPDATE files SET (date, date_source) = (SELECT date, date_source FROM files WHERE id = ?) "
                        "WHERE id = ? AND (SELECT date_source FROM files WHERE id = ?) IN ('exif', 'tag')",
                        (src_id, dst_id, src_id))

    def delete_file(self, file_id: int) -> np.ndarray:
        """Delete a file and its items; returns the removed item ids (to remove from the vector index)."""
        ids = self.delete_items_of_file(file_id)
        self.db.execute("DELETE FROM files WHERE id=?", (file_id,))
        return ids

    def item_ids_of_file(self, file_id: int) -> np.ndarray:
        rows = self.db.execute("SELECT id FROM items WHERE file_id=? ORDER BY ordinal", (file_id,)).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def delete_items_of_file(self, file_id: int) -> np.ndarray:
        ids = self.item_ids_of_file(file_id)
        self.db.execute("DELETE FROM fts WHERE rowid IN (SELECT id FROM items WHERE file_id=?)", (file_id,))
        self.db.execute("DELETE FROM items WHERE file_id=?", (file_id,))
        return ids

    # --- items
    def add_items(self, file_id: int, modality: str, entries: Iterable[ItemRecord | tuple]) -> np.ndarray:
        """Insert a file's items in order; `modality` is theirs where an entry names none."""
        ids = []
        for ordinal, entry in enumerate(entries):
            r = ItemRecord(*entry)
            cur = self.db.execute("INSERT INTO items(file_id, modality, ordinal, locator, text) VALUES (?, ?, ?, ?, ?)",
                                  (file_id, r.modality or modality, ordinal, json.dumps(r.locator), r.text))
            ids.append(cur.lastrowid)
        self._index_words(file_id)
        return np.array(ids, dtype=np.int64)

    def _index_words(self, file_id: int | None = None) -> None:
        """The keyword index of a file's items (or of every item): each item's text, the file's path (its folder
        and file names split into words) and the file's tags (EXIF description and keywords, IPTC, audio
        title/artist...)."""
        where, args = ("WHERE i.file_id=?", (file_id,)) if file_id is not None else ("", ())
        self.db.execute(f"DELETE FROM fts WHERE rowid IN (SELECT i.id FROM items i {where})", args)
        self.db.execute("INSERT INTO fts(rowid, body) SELECT i.id, COALESCE(i.text, '') || char(10) || f.path || "
                        f"char(10) || COALESCE(f.tags, '') FROM items i JOIN files f ON f.id = i.file_id {where}", args)

    def keyword_index_mismatches(self) -> int:
        """Items missing from the keyword index plus keyword rows of no item (0: in step; older catalogs: 0)."""
        if self.version < 2:
            return 0
        return int(self.db.execute(
            "SELECT (SELECT COUNT(*) FROM items WHERE id NOT IN (SELECT rowid FROM fts)) + "
            "(SELECT COUNT(*) FROM fts WHERE rowid NOT IN (SELECT id FROM items))").fetchone()[0])

    def keyword_search(self, text: str, limit: int) -> list[tuple[int, float]]:
        """(item id, BM25 score; higher is better) of the items whose words match any word of `text`, best first."""
        if self.version < 2:
            raise MMRError("this index was written by an older mmretrieval: run `mmr index` once to build its "
                           "keyword index")
        words = re.findall(r"\w+(?:[-.'/]\w+)*", text)
        if not words:
            return []
        query = " OR ".join('"' + w.replace('"', '""') + '"' for w in words)
        rows = self.db.execute("SELECT rowid, bm25(fts) FROM fts WHERE fts MATCH ? ORDER BY bm25(fts) LIMIT ?",
                               (query, limit))
        return [(int(r[0]), -float(r[1])) for r in rows]

    def items_of_file(self, file_id: int) -> list[ItemRow]:
        return self._items("WHERE i.file_id=? ORDER BY i.ordinal", (file_id,))

    def items(self, ids: Iterable[int]) -> dict[int, ItemRow]:
        ids = in_range(ids)
        out: dict[int, ItemRow] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            q = ",".join("?" * len(chunk))
            for row in self._items(f"WHERE i.id IN ({q})", chunk):
                out[row.id] = row
        return out

    def files_of_items(self, ids: Iterable[int]) -> dict[int, int]:
        """item id -> its file's id, for those of `ids` in the catalog (no row decoded: the relevance profile asks
        this of ~100 k ids)."""
        ids = in_range(ids)
        out: dict[int, int] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            out.update(self.db.execute(f"SELECT id, file_id FROM items WHERE id IN ({','.join('?' * len(chunk))})",
                                       chunk).fetchall())
        return out

    def _items(self, where: str, args: Any) -> list[ItemRow]:
        rows = self.db.execute(
            f"SELECT i.id, i.file_id, f.path, i.modality, i.ordinal, i.locator, i.text, {self._date}, f.modality, "
            f"f.space FROM items i JOIN files f ON f.id = i.file_id {where}", args)
        return [ItemRow(id=r[0], file_id=r[1], path=r[2], modality=r[3], ordinal=r[4],
                        locator=json.loads(r[5]) if r[5] else {}, text=r[6], date=r[7], file_modality=r[8],
                        approximate=bool(r[9]) and r[9].startswith(BRIDGED))
                for r in rows]

    @property
    def _date(self) -> str:
        return "f.date" if self.version >= 2 else "f.mtime_ns / 1e9"  # an older catalog opened read-only

    def item_ids_where(self, modalities: Iterable[str], filters: Any, file_modality: str | None = None) -> np.ndarray:
        """Ids of the items of these modalities whose files pass `filters` (a `query.Filters`) and, if given, are
        of `file_modality` (a video's scenes among the images)."""
        modalities = list(modalities)
        where, args = [f"i.modality IN ({','.join('?' * len(modalities))})"], list(modalities)
        if file_modality is not None:
            where.append("f.modality = ?")
            args.append(file_modality)
        if filters.paths:
            ors = []
            for p in filters.paths:
                if any(c in p for c in "*?["):
                    ors.append("f.path GLOB ?")
                    args.append(p)
                else:  # a folder (everything below it) or a file
                    top = p.rstrip("/")
                    ors.append("(f.path = ? OR (f.path >= ? AND f.path < ?))")
                    args += [top or "/", top + "/", top + "0"]
            where.append("(" + " OR ".join(ors) + ")")
        if filters.exts:
            where.append(f"f.ext IN ({','.join('?' * len(filters.exts))})")
            args += list(filters.exts)
        for col, op, value in ((self._date, ">=", filters.after), (self._date, "<", filters.before),
                               ("f.size", ">=", filters.min_size), ("f.size", "<=", filters.max_size)):
            if value is not None:
                where.append(f"{col} {op} ?")
                args.append(value)
        if filters.exts and self.version < 2:
            raise MMRError("this index was written by an older mmretrieval: run `mmr index` once to upgrade it "
                           "for --ext filters")
        rows = self.db.execute(f"SELECT i.id FROM items i JOIN files f ON f.id = i.file_id WHERE {' AND '.join(where)}",
                               args)
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def lane_item_ids(self, modality: str, of_files: str | None = None, filters: Any = None) -> np.ndarray:
        """The items a result lane covers: of `modality`, of `of_files`'s files only where given (a video's scenes
        among the images; MEMORY: an agent's memories), whose files pass `filters`. Without `of_files`, memories
        are left out: they are recalled, not found by searches of the collection."""
        ids = self.item_ids([modality], file_modality=of_files) if filters is None or filters.empty else \
            self.item_ids_where([modality], filters, file_modality=of_files)
        if of_files is None:
            memories = self.memory_items()[0]
            if memories.size:
                ids = np.setdiff1d(ids, memories)
        return ids

    def item_ids(self, modalities: Iterable[str] | None = None, file_modality: str | None = None) -> np.ndarray:
        if file_modality is not None:
            mods = list(modalities) if modalities is not None else []
            rows = self.db.execute(
                "SELECT i.id FROM items i JOIN files f ON f.id = i.file_id WHERE f.modality = ?"
                + (f" AND i.modality IN ({','.join('?' * len(mods))})" if modalities is not None else ""),
                [file_modality, *mods])
        elif modalities is None:
            rows = self.db.execute("SELECT id FROM items")
        else:
            mods = list(modalities)
            rows = self.db.execute(f"SELECT id FROM items WHERE modality IN ({','.join('?' * len(mods))})", mods)
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def item_id_summary(self) -> tuple[int, int, int, int]:
        """(count, sum, min, max) of the item ids: a quick comparison with the vectors' ids."""
        n, total, lo, hi = self.db.execute("SELECT COUNT(*), COALESCE(SUM(id), 0), MIN(id), MAX(id) FROM items").fetchone()
        return int(n), int(total), -1 if lo is None else int(lo), -1 if hi is None else int(hi)

    def has_pooled_audio(self) -> bool:
        """Does any audio item stand for a whole file's pooled windows (an index built with --pool-audio)?"""
        return self.db.execute("SELECT 1 FROM items WHERE modality='audio' AND locator LIKE '%\"pooled_windows\"%' "
                               "LIMIT 1").fetchone() is not None

    def counts(self) -> dict[str, Any]:
        items = {r[0]: r[1] for r in self.db.execute("SELECT modality, COUNT(*) FROM items GROUP BY modality")}
        files = {r[0]: r[1] for r in self.db.execute("SELECT status, COUNT(*) FROM files GROUP BY status")}
        memories, attached = self.db.execute("SELECT COUNT(*), COUNT(file_id) FROM memories").fetchone() \
            if self._memories_ready() else (0, 0)
        return {"items": items, "files_indexed": files.get("indexed", 0) - attached,
                "files_skipped": files.get("skipped", 0), "memories": memories}

    def bridged(self) -> dict[str, Any]:
        """Files whose vectors came through a bridge (a migration under way): their count, items and paths."""
        paths = [r[0] for r in self.db.execute(f"SELECT path FROM files WHERE space LIKE '{BRIDGED}%' ORDER BY path")]
        items = self.db.execute(f"SELECT COUNT(*) FROM items i JOIN files f ON f.id = i.file_id "
                                f"WHERE f.space LIKE '{BRIDGED}%'").fetchone()[0] if paths else 0
        return {"files": len(paths), "items": int(items), "paths": paths}

    def export_rows(self, modality: str) -> Iterator[dict[str, Any]]:
        """Every item of a modality with its file's facts, by path then position in the file (for shards). A file's
        items may be of several modalities: each row names the file's own modality and how many items it has."""
        rows = self.db.execute(
            "SELECT i.id, f.path, f.hash, i.ordinal, i.locator, i.text, f.size, f.mtime_ns, f.date, f.date_source, "
            "f.tags, f.modality, c.n FROM items i JOIN files f ON f.id = i.file_id "
            "JOIN (SELECT file_id, COUNT(*) AS n FROM items GROUP BY file_id) c ON c.file_id = f.id "  # once per file
            "WHERE i.modality = ? AND f.modality != ? ORDER BY f.path, i.ordinal",  # memories: memory_export_rows
            (modality, MEMORY))
        for r in rows:
            yield {"item_id": r[0], "path": r[1], "sha256": r[2], "ordinal": r[3],
                   "locator": json.loads(r[4]) if r[4] else {}, "text": r[5], "size": r[6], "mtime_ns": r[7],
                   "date": r[8], "date_source": r[9], "tags": r[10], "file_modality": r[11], "file_items": r[12]}

    def skipped_rows(self) -> list[dict[str, Any]]:
        return [{"path": r[0], "modality": r[1], "size": r[2], "mtime_ns": r[3], "error": r[4]} for r in self.db.execute(
            "SELECT path, modality, size, mtime_ns, error FROM files WHERE status='skipped' ORDER BY path")]

    def skipped(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.db.execute("SELECT path, error FROM files WHERE status='skipped' ORDER BY path")]

    # --- memories (see memory.py): a row each, with a file row `memory:<id>` holding its passages as items
    def _memories_ready(self) -> bool:
        return self.version >= 3  # an older catalog opened read-only has none

    def add_memory(self, scope: Any, text: str, metadata: dict[str, Any], now: float) -> int:
        s = scope.stored()
        cur = self.db.execute("INSERT INTO memories(user, agent, session, text, metadata, created, updated) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?)",
                              (s.user, s.agent, s.session, text, json.dumps(metadata) if metadata else None, now, now))
        return int(cur.lastrowid)

    def update_memory(self, memory_id: int, text: str, metadata: dict[str, Any] | None, now: float) -> None:
        """New text (and, when given, metadata); its items are replaced by the caller (`attach_memory`)."""
        if metadata is None:
            self.db.execute("UPDATE memories SET text=?, updated=? WHERE id=?", (text, now, memory_id))
        else:
            self.db.execute("UPDATE memories SET text=?, metadata=?, updated=? WHERE id=?",
                            (text, json.dumps(metadata) if metadata else None, now, memory_id))

    def attach_memory(self, memory_id: int, space: str, items: Iterable[ItemRecord]) -> np.ndarray:
        """(Re)write the file row and items of a memory from its current text; returns the new item ids (their
        vectors are the caller's to add). The items it had before are deleted: their ids are `detach_memory`'s."""
        r = self.db.execute("SELECT text, created, updated FROM memories WHERE id=?", (memory_id,)).fetchone()
        file_id = self.upsert_file(f"{MEMORY}:{memory_id}", MEMORY, len(r[0].encode()), int(r[2] * 1e9), None,
                                   "indexed", None, space, date=r[1], date_source=MEMORY)
        self.db.execute("UPDATE memories SET file_id=? WHERE id=?", (file_id, memory_id))
        return self.add_items(file_id, "text", items)

    def detach_memory(self, memory_id: int) -> np.ndarray:
        """Delete a memory's file row and items (the memory stays, waiting to be embedded); returns the item ids."""
        row = self.db.execute("SELECT file_id FROM memories WHERE id=?", (memory_id,)).fetchone()
        if row is None or row[0] is None:
            return np.empty(0, np.int64)
        return self.delete_file(int(row[0]))

    def delete_memory(self, memory_id: int) -> np.ndarray:
        """Forget a memory; returns its item ids (to remove from the vector index)."""
        ids = self.detach_memory(memory_id)
        self.db.execute("DELETE FROM memories WHERE id=?", (memory_id,))
        return ids

    def _memory_where(self, scope: Any = None, metadata: dict[str, Any] | None = None, ids: Iterable[int] | None = None,
                      after: float | None = None, before: float | None = None) -> tuple[str, list[Any]]:
        where, args = ["1"], []
        for col, v in (scope.given().items() if scope is not None else ()):
            where.append(f"m.{col} = ?")
            args.append(v)
        for k, v in (metadata or {}).items():
            where.append("json_extract(m.metadata, ?) IS ?")  # IS: a None value matches a missing key too
            args += [f'$."{k}"', v]
        if ids is not None:
            ids = in_range(ids)
            where.append(f"m.id IN ({','.join('?' * len(ids))})")
            args += ids
        if after is not None:
            where.append("m.updated >= ?")
            args.append(after)
        if before is not None:
            where.append("m.updated < ?")
            args.append(before)
        return " AND ".join(where), args

    def memories(self, scope: Any = None, metadata: dict[str, Any] | None = None, ids: Iterable[int] | None = None,
                 after: float | None = None, before: float | None = None, limit: int | None = None,
                 pending: bool = False) -> list[dict[str, Any]]:
        """Memories in a scope (see `memory.Scope`) whose metadata has these values, newest update first;
        `pending`: only those waiting to be embedded."""
        if not self._memories_ready():
            return []
        where, args = self._memory_where(scope, metadata, ids, after, before)
        if pending:
            where += " AND m.file_id IS NULL"
        rows = self.db.execute(
            "SELECT m.id, m.text, m.user, m.agent, m.session, m.metadata, m.created, m.updated, m.file_id "
            f"FROM memories m WHERE {where} ORDER BY m.updated DESC, m.id DESC"
            + (f" LIMIT {int(limit)}" if limit is not None else ""), args)
        return [{"id": r[0], "text": r[1], "user": r[2], "agent": r[3], "session": r[4],
                 "metadata": json.loads(r[5]) if r[5] else {}, "created": r[6], "updated": r[7],
                 "embedded": r[8] is not None} for r in rows]

    def memory_items(self, scope: Any = None, metadata: dict[str, Any] | None = None,
                     after: float | None = None, before: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(item ids, their memories' ids) of the memories that pass; all memories' with no arguments."""
        if not self._memories_ready():
            return np.empty(0, np.int64), np.empty(0, np.int64)
        where, args = self._memory_where(scope, metadata, None, after, before)
        rows = self.db.execute(f"SELECT i.id, m.id FROM memories m JOIN items i ON i.file_id = m.file_id "
                               f"WHERE {where} ORDER BY i.id", args).fetchall()
        return (np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int64))

    def memory_export_rows(self) -> Iterator[dict[str, Any]]:
        """Every memory's passages (its text, scope, metadata and times on each row), by memory then position."""
        if not self._memories_ready():
            return
        rows = self.db.execute(
            "SELECT i.id, m.id, m.text, m.user, m.agent, m.session, m.metadata, m.created, m.updated, i.ordinal, "
            "i.locator, i.text, c.n FROM memories m JOIN items i ON i.file_id = m.file_id "
            "JOIN (SELECT file_id, COUNT(*) AS n FROM items GROUP BY file_id) c ON c.file_id = m.file_id "
            "ORDER BY m.id, i.ordinal")
        for r in rows:
            yield {"item_id": r[0], "memory_id": r[1], "memory": r[2], "user": r[3], "agent": r[4], "session": r[5],
                   "metadata": r[6], "created": r[7], "updated": r[8], "ordinal": r[9],
                   "locator": json.loads(r[10]) if r[10] else {}, "text": r[11], "memory_items": r[12]}
