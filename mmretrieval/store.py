"""An index folder on disk: the FAISS vectors, the SQLite catalog, the space it was built in, a lock.

Commit protocol (so a kill at any moment leaves something consistent): catalog changes happen inside
one transaction; at a checkpoint the vectors changed since the last one are written to a *new* file
(temp file + fsync + rename): a delta segment (``vectors.<generation>.delta``: added vectors and removed
ids, see `index/segments.py`) or, when the deltas have grown large, a whole new base
(``vectors.<generation>.faiss``). The catalog transaction that names the resulting list of segments
commits second. The committed catalog therefore always names vector files that match it exactly; a kill
before the commit leaves only unreferenced files, removed on the next write. `reconcile` is a safety net for
damage from outside (a deleted or replaced file): it drops vectors the catalog does not know and
forgets items whose vectors are gone, so they are re-embedded.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import switch
from .catalog import Catalog, FileRow
from .embedding_cache import FILE as CACHE_FILE, EmbeddingCache, content_key, key as cache_key
from .errors import IndexLockedError, IndexNotFoundError, SpaceMismatchError
from .index import VectorIndex
from .index.mapped import MappedIndex
from .index.exact_rows import IDS_SUFFIX, ROWS_SUFFIX, companions, companions_bytes
from .index.segments import DELTA_SUFFIX, base_is_due, is_delta, read_delta, write_delta
from .space.spec import SpaceSpec




def settle(root: Path) -> None:
    """Before anything looks at an index folder: a switch to another space under way is waited for, one cut
    short is finished (`switch`)."""
    if (root / switch.JOURNAL).exists():
        switch.wait_or_finish(root, lambda: lock_is_held(root / Store.LOCK))


def lock_is_held(path: Path) -> bool:
    """Does a process hold the writer's lock at `path` (this one through another descriptor included)?"""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _summary(ids: np.ndarray) -> tuple[int, int, int, int]:
    if not ids.size:
        return 0, 0, -1, -1
    return int(ids.size), int(ids.sum()), int(ids.min()), int(ids.max())


class Store:
    LOCK = ".lock"

    def __init__(self, root: str | os.PathLike, *, create: bool = False, readonly: bool = False) -> None:
        self.root = Path(os.path.expanduser(os.fspath(root))).resolve()
        settle(self.root)
        if not create and not (self.root / Catalog.FILE).is_file():
            what = "does not exist" if not self.root.exists() else "is not an mmretrieval index (no catalog.sqlite)"
            raise IndexNotFoundError(f"{self.root} {what}; create one with `mmr index FOLDER --index {self.root}`")
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        self.readonly = readonly
        self.catalog = Catalog(self.root / Catalog.FILE, create=create, readonly=readonly)
        self._catalog_inode = (self.root / Catalog.FILE).stat().st_ino
        self._lock_fd: int | None = None
        self.vectors: VectorIndex | MappedIndex | None = None
        self._segments: list[str] = []  # the committed segments the loaded vectors are made of
        self._closed = False
        self.cache = EmbeddingCache(self.root / CACHE_FILE)

    def switched(self) -> bool:
        """Has another space's index taken this folder's place since it was opened (`switch`)?"""
        try:
            return (self.root / Catalog.FILE).stat().st_ino != self._catalog_inode
        except FileNotFoundError:
            return False  # in the middle of a switch: the next look sees it done

    # --- space
    @property
    def vectors_path(self) -> Path:
        """The base file of the committed vectors (deltas, if any, are applied on top of it)."""
        segs = self.segments()
        return self.root / (segs[0] if segs else VectorIndex.FILE)

    def segments(self) -> list[str]:
        """The committed vector files, base first, then deltas in order."""
        raw = self.catalog.get_meta("vectors_segments")
        if raw:
            return json.loads(raw)
        legacy = self.catalog.get_meta("vectors_file")  # indexes written before segments
        return [legacy] if legacy else []

    def space_record(self) -> dict[str, Any] | None:
        raw = self.catalog.get_meta("space")
        return None if raw is None else json.loads(raw)

    def stored_spec(self) -> SpaceSpec | None:
        rec = self.space_record()
        return None if rec is None else SpaceSpec.from_dict(rec["spec"])

    def init_space(self, spec: SpaceSpec, fingerprint: str, dim: int, precision: str = "fp32",
                   jpeg_draft: int | None = None, modality_towers: dict[str, str] | None = None) -> None:
        rec = {"spec": spec.to_dict(), "fingerprint": fingerprint, "dim": dim, "metric": spec.metric,
               "precision": precision}
        if jpeg_draft is not None:
            rec["jpeg_draft"] = jpeg_draft
        if modality_towers:
            rec["modality_towers"] = modality_towers
        self._write_space(rec)

    def note_modality_towers(self, fingerprint: str, modality_towers: dict[str, str]) -> None:
        """Record each modality's tower in an index made before they were recorded (the embedding cache's
        entries then serve other spaces with the same tower); the caller holds the writer's lock."""
        rec = self.space_record()
        if rec is not None and "modality_towers" not in rec and rec["fingerprint"] == fingerprint:
            self._write_space({**rec, "modality_towers": modality_towers})

    def _write_space(self, rec: dict[str, Any]) -> None:
        with self.catalog.transaction():
            self.catalog.set_meta("space", json.dumps(rec))
        (self.root / "space.json").write_text(json.dumps(rec, indent=2))

    def check_space(self, name: str, fingerprint: str, metric: str = "cosine") -> None:
        rec = self.space_record()
        if rec is None:
            return
        if rec["fingerprint"] != fingerprint or rec.get("metric", "cosine") != metric:
            raise SpaceMismatchError(
                f"the index at {self.root} was built in space {rec['spec']['name']!r} "
                f"(fingerprint {rec['fingerprint']}, metric {rec.get('metric', 'cosine')}) but this uses space "
                f"{name!r} (fingerprint {fingerprint}, metric {metric}); vectors from different spaces are not "
                f"comparable. Use the index's own space (omit --model) or build a new index.")

    # --- vectors
    def load_vectors(self, dim: int) -> VectorIndex:
        for attempt in range(5):
            segs = self.segments()
            try:
                if segs:
                    # a reader maps an IVF base's lists (shared, read where probed); a writer changes them in memory
                    vectors = MappedIndex.load(self.root / segs[0]) if self.readonly else \
                        VectorIndex.load(self.root / segs[0])
                    for name in segs[1:]:
                        vectors.apply(read_delta(self.root / name))
                    if not vectors.needs_base:
                        vectors.persisted()
                elif (self.root / VectorIndex.FILE).is_file():
                    vectors = VectorIndex.load(self.root / VectorIndex.FILE)
                else:
                    vectors = VectorIndex.create(dim)
            except FileNotFoundError:
                continue  # a writer committed a new base and removed these files meanwhile: read the list again
            self.vectors, self._segments = vectors, segs
            break
        else:
            raise IndexNotFoundError(f"a vector file named by the catalog of {self.root} is missing; "
                                     f"run `mmr check --repair --index {self.root}`")
        if self.vectors.dim != dim:
            raise SpaceMismatchError(f"vector index dim {self.vectors.dim} != space dim {dim}")
        return self.vectors

    def refresh_vectors(self, dim: int) -> bool:
        """Catch up with commits of another process: apply only its new deltas when the base is the same,
        else reload. Returns True if anything changed."""
        segs = self.segments()
        if segs == self._segments:
            return False
        have = self._segments
        if self.vectors is not None and have and segs[:len(have)] == have:
            try:
                for name in segs[len(have):]:
                    self.vectors.apply(read_delta(self.root / name))
                self.vectors.persisted()
                self._segments = segs
                return True
            except FileNotFoundError:
                pass  # compacted meanwhile (the vectors may be half-updated): reload below
        self.load_vectors(dim)
        return True

    # --- writing
    def acquire_lock(self, wait: float = 0.0) -> None:
        """Take the writer's lock, waiting up to `wait` seconds for another writer to finish."""
        if self._lock_fd is not None:
            return
        fd = os.open(self.root / self.LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                try:
                    holder = os.read(fd, 64).decode(errors="replace").strip()
                finally:
                    os.close(fd)
                raise IndexLockedError(
                    f"another process{f' (pid {holder})' if holder else ''} is writing to the index at {self.root}"
                    f"{f' (waited {wait:g} s)' if wait else ''}; wait for it to finish (searches keep working "
                    f"meanwhile)") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    @property
    def vectors_stamp(self) -> str | None:
        """Names the committed vector state loaded here; changes at every commit that changes vectors."""
        return self._segments[-1] if self._segments else None

    @property
    def holds_lock(self) -> bool:
        return self._lock_fd is not None

    def release_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def begin(self) -> None:
        self.catalog.begin()

    def checkpoint(self, *, compact: bool = False) -> None:
        """Make everything so far durable: the vectors' changes first (a delta, or a new base when the deltas
        have grown or `compact` is asked), then the catalog that names the files."""
        assert self.vectors is not None
        gen = int(self.catalog.get_meta("generation") or 0) + 1
        segs = self.segments()
        delta = None if compact else self.vectors.changes()
        if segs and delta is not None and delta.empty:
            new = segs  # nothing changed in the vectors: no file to write
        elif segs and delta is not None and not base_is_due(
                *self._segment_sizes(segs), delta.ids.nbytes + delta.vectors.nbytes + delta.removed.nbytes):
            name = f"vectors.{gen:08d}{DELTA_SUFFIX}"
            write_delta(self.root / name, delta)
            new = segs + [name]
        else:
            name = f"vectors.{gen:08d}.faiss"
            self.vectors.save(self.root / name)
            new = [name]
        self.catalog.begin()
        self.catalog.set_meta("vectors_segments", json.dumps(new))
        self.catalog.delete_meta("vectors_file")
        self.catalog.set_meta("generation", str(gen))
        self.catalog.commit()
        self.vectors.persisted()
        self._segments = new
        self.remove_stale_vector_files()

    def _segment_sizes(self, segs: list[str]) -> tuple[int, list[int]]:
        """(the base's bytes with its exact rows: what rewriting it costs, each delta's bytes)"""
        sizes = [(self.root / n).stat().st_size for n in segs]
        return sizes[0] + companions_bytes(self.root / segs[0]), sizes[1:]

    def segment_stats(self) -> dict[str, Any]:
        """How the committed vectors are stored: base and delta files and their sizes."""
        segs = self.segments()
        sizes = [(self.root / n).stat().st_size if (self.root / n).exists() else 0 for n in segs]
        return {"segments": segs, "base_bytes": sizes[0] if sizes else 0,
                "exact_rows_bytes": companions_bytes(self.root / segs[0]) if segs else 0,
                "deltas": sum(map(is_delta, segs)), "delta_bytes": sum(sizes[1:])}

    def remove_stale_vector_files(self) -> None:
        """Delete vector files the committed catalog does not name (older generations, killed runs)."""
        keep = set(self.segments())
        keep |= {c.name for name in keep for c in companions(self.root / name)}
        for pattern in ("vectors*.faiss", f"vectors*{DELTA_SUFFIX}", "vectors*.tmp", f"vectors*{ROWS_SUFFIX}",
                        f"vectors*{IDS_SUFFIX}"):
            for f in self.root.glob(pattern):
                if f.name not in keep:
                    try:
                        f.unlink()
                    except OSError:
                        pass

    def reconcile(self) -> dict[str, int]:
        """Make catalog and vectors agree (a safety net; the commit protocol keeps them so); returns what was fixed."""
        assert self.vectors is not None
        self.remove_stale_vector_files()
        idx_ids = self.vectors.ids()
        fixed = {"orphan_vectors": 0, "items_without_vector": 0, "files_reset": 0}
        # The protocol keeps both sides equal: compare (count, sum, min, max) of the ids first, so that a
        # write to a large index does not pay for a full comparison (`Engine.check` always compares in full).
        if _summary(idx_ids) == self.catalog.item_id_summary():
            return fixed
        cat_ids = self.catalog.item_ids()
        extra = np.setdiff1d(idx_ids, cat_ids)
        missing = np.setdiff1d(cat_ids, idx_ids)
        fixed.update(orphan_vectors=int(extra.size), items_without_vector=int(missing.size))
        if extra.size == 0 and missing.size == 0:
            return fixed
        self.catalog.begin()
        if extra.size:
            self.vectors.remove(extra)
        if missing.size:
            rows = self.catalog.items(missing.tolist())
            for file_id in sorted({r.file_id for r in rows.values()}):
                # Forget the file entirely: its remaining vectors go too, and the next run re-embeds it.
                self.vectors.remove(self.catalog.delete_file(file_id))
                fixed["files_reset"] += 1
        self.checkpoint()
        return fixed

    def keep_vectors(self, row: FileRow, options: dict[str, Any]) -> None:
        """Before a file's vectors leave the index (removed, changed, gone): keep them in the embedding cache, so
        that its content coming back costs no encoding. Not from indexes whose stored vectors are lossy codes, nor a
        bridge's approximations."""
        if (row.status != "indexed" or not row.hash or not row.space or row.bridged or not self.cache.enabled
                or self.vectors is None or self.vectors.lossy):
            return
        items = self.catalog.items_of_file(row.id)
        if not items:
            return
        vecs = self.vectors.reconstruct(np.array([i.id for i in items], np.int64))
        date, source, tags = self.catalog.db.execute("SELECT date, date_source, tags FROM files WHERE id=?",
                                                     (row.id,)).fetchone()
        own = source in ("exif", "tag")
        meta = {"date": date if own else None, "date_source": source if own else None,
                "tags": tags.split("\n") if tags else []}
        # as the index holds them: unit rows from an exact index, fp16-rounded ones that an ivf-fp16 index stores
        # again as the same codes (normalising again would move their last bits)
        towers = (self.space_record() or {}).get("modality_towers") or {}
        used = {i.modality for i in items}
        self.cache.put(cache_key(row.space, row.hash, row.modality, options),
                       [(i.locator, i.text, i.modality) for i in items], vecs, meta,
                       content=content_key(row.hash, row.modality, options),
                       towers={m: towers[m] for m in used} if used <= towers.keys() else None)

    def close(self) -> None:
        """Roll back what was not checkpointed, release the lock, close the catalog (again: nothing)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.catalog.rollback()
        finally:
            self.release_lock()
            self.catalog.close()
            self.cache.close()
