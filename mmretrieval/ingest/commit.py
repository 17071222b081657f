"""Indexing, part 3 of 3: commit. The single writer turns embedded files into catalog rows and vectors.

It assigns ids (the catalog's, never reused), replaces a changed file's items, turns a known content
into a move (the vectors stay, the path changes) or a copy (the vectors are copied), records skips with
their reasons, and sweeps files that vanished. It writes inside the store's open transaction; the
caller flushes the gathered removals and checkpoints (`Store.checkpoint`: vectors first, then the catalog
naming them).
"""
from __future__ import annotations

import numpy as np

from ..catalog import ItemRecord, item_modality
from ..embedding_cache import key as cache_key
from ..errors import SpaceMismatchError
from ..index.vectors_stream import unit_rows
from ..store import Store
from .embed import EmbeddedFile
from .plan import Plan


class Committer:
    def __init__(self, store: Store, plan: Plan, fingerprint: str, report,  # noqa: ANN001
                 options: dict | None = None) -> None:
        """`options`: the index's item options (`ItemOptions.to_dict()`), part of the embedding cache's keys."""
        self.options = options if options is not None else {}
        self.store = store
        self.plan = plan
        self.fingerprint = fingerprint
        self.report = report
        self.moved_from: set[str] = set()
        self.gone_by_hash = dict(plan.gone_by_hash)
        # Vectors to drop, applied together by flush(): on IVF and HNSW every removal rebuilds the structure,
        # so one removal per checkpoint instead of one per changed file (100 changes at 100 k: 31 s -> see README).
        self._to_remove: list[np.ndarray] = []

    def flush(self) -> None:
        """Apply the removals gathered since the last flush (call before every checkpoint)."""
        if self._to_remove:
            self.store.vectors.remove(np.concatenate(self._to_remove))
            self._to_remove = []

    def apply(self, f: EmbeddedFile) -> None:
        if f.fingerprint != self.fingerprint:
            raise SpaceMismatchError(
                f"vectors for {f.entry.path} were made in space {f.fingerprint}, not the index's {self.fingerprint}")
        cat, vectors, entry, report = self.store.catalog, self.store.vectors, f.entry, self.report
        old = self.plan.known.get(entry.path)
        if old is None:  # not under the planned roots, or added after the plan: look it up
            old = cat.file(entry.path)
        if old is not None:
            if old.hash != f.hash and not f.reuse:  # its content changed (or it cannot be read now): keep the vectors
                self.store.keep_vectors(old, self.options)
            removed = cat.delete_items_of_file(old.id)
            self._to_remove.append(removed)
            report.items_removed += int(removed.size)
        fp = self.fingerprint
        if f.error is not None:
            cat.upsert_file(entry.path, entry.modality, entry.size, entry.mtime_ns, None, "skipped", f.error, fp)
            report.skipped.append((entry.path, f.error))
            return
        if old is not None:
            report.files_changed += 1
        if f.reuse:
            self._reuse(f, old)
            return
        if f.note:
            report.notes.append((entry.path, f.note))
        meta = f.meta or {}
        file_id = cat.upsert_file(entry.path, entry.modality, entry.size, entry.mtime_ns, f.hash, "indexed", None, fp,
                                  date=meta.get("date"), date_source=meta.get("date_source"), tags=meta.get("tags") or ())
        ids = cat.add_items(file_id, entry.modality, f.items)
        if ids.size:
            vectors.add(ids, np.asarray(f.vectors, np.float32))
            for item in f.items:
                report.added[item_modality(item, entry.modality)] += 1
        if old is None:
            report.files_new += 1
        if f.cached:  # back in the index: the cache's copy is of no further use
            report.files_from_cache += 1
            self.store.cache.discard(cache_key(fp, f.hash or "", entry.modality, self.options))

    def _reuse(self, f: EmbeddedFile, old) -> None:  # noqa: ANN001
        cat, vectors, entry, report = self.store.catalog, self.store.vectors, f.entry, self.report
        src = self.gone_by_hash.get(f.hash) or self.plan.present_by_hash.get(f.hash)
        if src is None:
            raise AssertionError(f"no source for reused content of {entry.path}")  # the plan said there was
        if src.path not in self.moved_from and self.gone_by_hash.get(f.hash) is src:
            if old is not None:
                cat.delete_file(old.id)
            cat.move_file(src.id, entry.path, entry.size, entry.mtime_ns)
            self.moved_from.add(src.path)
            self.gone_by_hash.pop(f.hash, None)
            if old is None:
                report.files_moved += 1
            return
        # copy: same content as an indexed file; reuse its vectors
        items = cat.items_of_file(src.id)
        ids = np.array([i.id for i in items], dtype=np.int64)
        vecs = vectors.reconstruct(ids) if ids.size else np.empty((0, vectors.dim), np.float32)
        file_id = cat.upsert_file(entry.path, entry.modality, entry.size, entry.mtime_ns, f.hash, "indexed", None,
                                  self.fingerprint)
        cat.copy_metadata(src.id, file_id)  # the content's own date (EXIF, tag) and tags are the copy's too
        new_ids = cat.add_items(file_id, src.modality, [ItemRecord(i.locator, i.text, i.modality) for i in items])
        if new_ids.size:
            vectors.add(new_ids, unit_rows(vecs))
        if old is None:
            report.files_copied += 1

    def sweep(self) -> None:
        """Forget the files under the roots that vanished (and were not moved)."""
        for path, row in self.plan.gone.items():
            if path in self.moved_from:
                continue
            self.store.keep_vectors(row, self.options)
            removed = self.store.catalog.delete_file(row.id)
            self._to_remove.append(removed)
            self.report.files_removed += 1
            self.report.items_removed += int(removed.size)
