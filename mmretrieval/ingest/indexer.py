"""Mark-and-sweep incremental indexing (as rclip does), with content-hash reuse for moved files.

1. walk the roots and compare each file with the catalog by (size, mtime): unchanged files cost nothing;
2. new or changed files are read once, hashed and decoded in worker threads, ahead of batched encoding;
   a file whose hash matches one that vanished is a move (its vectors stay, its path changes), one whose
   hash matches a file still present is a copy (its vectors are copied, not re-embedded);
3. catalog files under the roots that were not seen are swept: their items leave index and catalog.
One bad file is recorded with its reason and skipped; it never ends the run.
"""
from __future__ import annotations

import logging
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..catalog import FileRow
from ..errors import DecodeError
from ..space.loader import Space
from ..store import Store
from .decode import Decoded, Decoder, PooledWindows, read_and_hash
from .walk import FileEntry, Ignored, WalkError, normalise_roots, walk

log = logging.getLogger(__name__)

ENCODER_BUG = ("not indexed because of an internal error in mmretrieval, not a problem with this file "
               "(please report it; MMR_DEBUG=1 shows the details)")


@dataclass
class IndexReport:
    """What one `index` run did."""

    added: Counter = field(default_factory=Counter)        # items embedded, per modality
    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    files_moved: int = 0
    files_copied: int = 0
    files_removed: int = 0
    items_removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)       # newly skipped (path, reason)
    still_skipped: list[tuple[str, str]] = field(default_factory=list)  # unchanged files skipped before
    repaired: dict[str, int] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)     # files of no modality indexed here (by extension below)
    notes: list[tuple[str, str]] = field(default_factory=list)  # indexed, with something to know (path, note)
    seconds: float = 0.0

    @property
    def ignored_by_ext(self) -> Counter:
        import os

        return Counter(os.path.splitext(p)[1].lower() or "(no extension)" for p in self.ignored)

    @property
    def items_added(self) -> int:
        return sum(self.added.values())

    @property
    def items_per_second(self) -> float:
        return self.items_added / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": dict(self.added), "items_added": self.items_added,
            "files_new": self.files_new, "files_changed": self.files_changed,
            "files_unchanged": self.files_unchanged, "files_moved": self.files_moved,
            "files_copied": self.files_copied, "files_removed": self.files_removed,
            "items_removed": self.items_removed,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "still_skipped": [{"path": p, "reason": r} for p, r in self.still_skipped],
            "repaired": self.repaired, "ignored": dict(self.ignored_by_ext), "ignored_files": list(self.ignored),
            "notes": [{"path": p, "note": n} for p, n in self.notes],
            "seconds": round(self.seconds, 3),
            "items_per_second": round(self.items_per_second, 2),
        }


@dataclass
class _Reuse:
    """Decided from the hash before decoding: this file's vectors already exist."""

    entry: FileEntry
    hash: str
    kind: str          # "move" | "copy"
    source: FileRow


class _Pending:
    """Items decoded and registered in the catalog, waiting for a batch to be encoded."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.payloads: list[Any] = []
        self.file_ids: list[int] = []

    def __len__(self) -> int:
        return len(self.ids)


class Indexer:
    def __init__(self, store: Store, space: Space, *, batch_size: int = 32, workers: int = 2,
                 checkpoint_seconds: float = 30.0, progress: bool = False, pool_audio: bool = False) -> None:
        self.store = store
        self.space = space
        self.batch_size = batch_size
        self.workers = max(1, workers)
        self.checkpoint_seconds = checkpoint_seconds
        self.progress = progress
        audio_spec = space.spec.audio
        self.decoder = Decoder(load_image=space.image.load, prepare_image=space.image.preprocess, count_tokens=space.text.count_tokens,
                               max_tokens=space.text.max_passage_tokens, audio=audio_spec, pool_audio=pool_audio)
        self.pending: dict[str, _Pending] = {}
        self.report = IndexReport()
        self._counted: dict[int, str] = {}  # file id -> "files_new" | "files_changed", until its items are encoded

    # ----------------------------------------------------------------- run
    def run(self, roots: list[str]) -> IndexReport:
        t0 = time.perf_counter()
        roots = normalise_roots(roots)
        store, cat = self.store, self.store.catalog
        known = cat.files(under=roots)
        seen: set[str] = set()
        todo: list[FileEntry] = []
        for x in walk(roots):
            if isinstance(x, Ignored):
                self.report.ignored.append(x.path)
                continue
            if isinstance(x, WalkError):
                self.report.skipped.append((x.path, x.reason))
                seen.add(x.path)  # unreadable now is not deleted: keep what we had
                continue
            seen.add(x.path)
            row = known.get(x.path)
            if row is not None and row.size == x.size and row.mtime_ns == x.mtime_ns and row.modality == x.modality:
                self.report.files_unchanged += 1
                if row.status == "skipped":
                    self.report.still_skipped.append((row.path, row.error or ""))
                continue
            todo.append(x)
        gone = {p: r for p, r in known.items() if p not in seen}
        self._known = known
        self._moved_from: set[str] = set()
        # Hash -> file, for reuse without re-embedding: vanished files (moves) and present ones (copies).
        self._gone_by_hash: dict[str, FileRow] = {r.hash: r for r in gone.values() if r.status == "indexed" and r.hash}
        self._present_by_hash: dict[str, FileRow] = {
            r.hash: r for r in cat.files().values() if r.status == "indexed" and r.hash and r.path not in gone}

        store.begin()
        self._last_checkpoint = time.monotonic()
        bar = _progress(len(todo), self.progress)
        try:
            for entry, result in self._decoded(todo):
                self._handle(entry, result)
                bar.update(1)
                if time.monotonic() - self._last_checkpoint > self.checkpoint_seconds:
                    self._checkpoint()
            self._flush_all()
            for path, row in gone.items():
                if path in self._moved_from:
                    continue
                removed = cat.delete_file(row.id)
                store.vectors.remove(removed)
                self.report.files_removed += 1
                self.report.items_removed += int(removed.size)
            self._checkpoint()
            store.catalog.commit()  # close the (empty) transaction the checkpoint opened
        except BaseException:
            store.catalog.rollback()
            raise
        finally:
            bar.close()
        self.report.seconds = time.perf_counter() - t0
        return self.report

    # ----------------------------------------------------------------- decoding
    def _prepare(self, entry: FileEntry) -> Decoded | _Reuse:
        """Worker thread: read once and hash; decode only when the vectors cannot be reused."""
        digest, data = read_and_hash(entry.path, entry.size)
        src = self._gone_by_hash.get(digest)
        if src is not None and src.modality == entry.modality:
            return _Reuse(entry, digest, "move", src)
        src = self._present_by_hash.get(digest)
        if src is not None and src.modality == entry.modality and src.path != entry.path:
            return _Reuse(entry, digest, "copy", src)
        return self.decoder.decode(entry, digest, data)

    def _decoded(self, todo: list[FileEntry]):
        """Yield (entry, Decoded | _Reuse | DecodeError) in order, decoding ahead in worker threads."""
        window = max(4 * self.workers, 8)  # bounded read-ahead keeps memory bounded
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="mmr-decode") as pool:
            queue: deque[tuple[FileEntry, Future]] = deque()
            for entry in todo:
                queue.append((entry, pool.submit(self._safe_prepare, entry)))
                if len(queue) >= window:
                    e, fut = queue.popleft()
                    yield e, fut.result()
            while queue:
                e, fut = queue.popleft()
                yield e, fut.result()

    def _safe_prepare(self, entry: FileEntry) -> Decoded | _Reuse | DecodeError:
        try:
            return self._prepare(entry)
        except DecodeError as e:
            return e
        except MemoryError:
            return DecodeError("out of memory while decoding")
        except Exception as e:  # one bad file never ends the run
            return DecodeError(f"unexpected {type(e).__name__}: {str(e)[:200]}")

    # ----------------------------------------------------------------- applying
    def _handle(self, entry: FileEntry, result: Decoded | _Reuse | DecodeError) -> None:
        cat, vectors = self.store.catalog, self.store.vectors
        old = self._known.get(entry.path)
        if old is not None:
            self._drop_pending(old.id)
            removed = cat.delete_items_of_file(old.id)
            vectors.remove(removed)
            self.report.items_removed += int(removed.size)
        fp = self.space.fingerprint
        if isinstance(result, DecodeError):
            cat.upsert_file(entry.path, entry.modality, entry.size, entry.mtime_ns, None, "skipped", str(result), fp)
            self.report.skipped.append((entry.path, str(result)))
            return
        if old is not None:
            self.report.files_changed += 1
        if isinstance(result, _Reuse):
            src = result.source
            if result.kind == "move" and src.path not in self._moved_from and self._gone_by_hash.get(result.hash) is src:
                if old is not None:
                    cat.delete_file(old.id)
                cat.move_file(src.id, entry.path, entry.size, entry.mtime_ns)
                self._moved_from.add(src.path)
                self._gone_by_hash.pop(result.hash, None)
                if old is None:
                    self.report.files_moved += 1
                return
            # copy: same content as an indexed file; reuse its vectors
            items = cat.items_of_file(src.id)
            ids = np.array([i.id for i in items], dtype=np.int64)
            vecs = vectors.reconstruct(ids) if ids.size else np.empty((0, vectors.dim), np.float32)
            file_id = cat.upsert_file(entry.path, entry.modality, entry.size, entry.mtime_ns, result.hash, "indexed", None, fp)
            new_ids = cat.add_items(file_id, src.modality, [(i.locator, i.text) for i in items])
            if new_ids.size:
                vectors.add(new_ids, vecs / np.linalg.norm(vecs, axis=1, keepdims=True))
            if old is None:
                self.report.files_copied += 1
            return
        decoded: Decoded = result
        if decoded.note:
            self.report.notes.append((entry.path, decoded.note))
        file_id = cat.upsert_file(entry.path, entry.modality, entry.size, entry.mtime_ns, decoded.hash, "indexed", None, fp)
        ids = cat.add_items(file_id, entry.modality, [(it.locator, it.text) for it in decoded.items])
        pend = self.pending.setdefault(entry.modality, _Pending())
        pend.ids.extend(ids.tolist())
        pend.payloads.extend(it.payload for it in decoded.items)
        pend.file_ids.extend([file_id] * len(ids))
        if old is not None:
            self._counted[file_id] = "files_changed"
        else:
            self.report.files_new += 1
            self._counted[file_id] = "files_new"
        while len(pend) >= self.batch_size:
            self._flush(entry.modality, self.batch_size)

    def _drop_pending(self, file_id: int) -> None:
        for pend in self.pending.values():
            keep = [i for i, f in enumerate(pend.file_ids) if f != file_id]
            if len(keep) != len(pend):
                pend.ids = [pend.ids[i] for i in keep]
                pend.payloads = [pend.payloads[i] for i in keep]
                pend.file_ids = [pend.file_ids[i] for i in keep]

    def _flush(self, modality: str, n: int | None = None) -> None:
        pend = self.pending.get(modality)
        if not pend:
            return
        n = len(pend) if n is None else min(n, len(pend))
        ids, payloads, file_ids = pend.ids[:n], pend.payloads[:n], pend.file_ids[:n]
        del pend.ids[:n], pend.payloads[:n], pend.file_ids[:n]
        encoder = self.space.encoder(modality)
        try:
            vecs = _encode(encoder, payloads)
            ok = np.ones(len(ids), dtype=bool)
        except Exception:
            # Isolate the item that breaks the batch; its file is skipped, the rest goes on.
            vecs = np.zeros((len(ids), encoder.dim), np.float32)
            ok = np.zeros(len(ids), dtype=bool)
            for i, p in enumerate(payloads):
                try:
                    vecs[i] = _encode(encoder, [p])[0]
                    ok[i] = True
                except Exception:
                    # Decoding already vetted the file, so this is a bug of ours, not the file's problem:
                    # the file is skipped (the run goes on) with a reason that says so; the log has the trace.
                    log.exception("encoding an item of file id %s failed", file_ids[i])
                    self._fail_file(file_ids[i], ENCODER_BUG)
        bad_files = {file_ids[i] for i in range(len(ids)) if not ok[i]}
        keep = np.array([ok[i] and file_ids[i] not in bad_files for i in range(len(ids))], dtype=bool)
        if keep.any():
            self.store.vectors.add(np.asarray(ids, np.int64)[keep], vecs[keep])
            self.report.added[modality] += int(keep.sum())

    def _fail_file(self, file_id: int, reason: str) -> None:
        cat = self.store.catalog
        row = cat.db.execute("SELECT path FROM files WHERE id=?", (file_id,)).fetchone()
        removed = cat.delete_items_of_file(file_id)
        present = np.intersect1d(removed, self.store.vectors.ids())
        self.store.vectors.remove(present)
        self._drop_pending(file_id)
        cat.db.execute("UPDATE files SET status='skipped', error=?, hash=NULL WHERE id=?", (reason, file_id))
        if row is not None:
            self.report.skipped.append((row[0], reason))
        counter = self._counted.pop(file_id, None)
        if counter is not None:  # it was counted as new or changed; it ends up skipped
            setattr(self.report, counter, getattr(self.report, counter) - 1)

    def _flush_all(self) -> None:
        for modality in list(self.pending):
            while self.pending[modality]:
                self._flush(modality, self.batch_size)

    def _checkpoint(self) -> None:
        self._flush_all()
        self.store.checkpoint()
        self.store.begin()
        self._last_checkpoint = time.monotonic()


def _encode(encoder, payloads: list[Any]) -> np.ndarray:
    """Encode a batch; a pooled audio payload becomes the normalised mean of its windows' vectors."""
    if not any(isinstance(p, PooledWindows) for p in payloads):
        return encoder.encode(payloads, batch_size=len(payloads))
    return np.stack([encoder.encode_pooled(p if isinstance(p, PooledWindows) else [p]) for p in payloads])


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="file", disable=not enabled, dynamic_ncols=True, leave=False)
