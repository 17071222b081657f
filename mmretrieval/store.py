"""An index folder on disk: the FAISS vectors, the SQLite catalog, the space it was built in, a lock.

Commit protocol (so a kill at any moment leaves something consistent): catalog changes happen inside
one transaction; at a checkpoint the vectors are written to a *new* file (``vectors.<generation>.faiss``,
temp file + fsync + rename), and the catalog transaction that names that file commits second. The
committed catalog therefore always names a vector file that matches it exactly; a kill before the
commit leaves only an unreferenced file, removed on the next write. `reconcile` is a safety net for
damage from outside (a deleted or replaced file): it drops vectors the catalog does not know and
forgets items whose vectors are gone, so they are re-embedded.
"""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .catalog import Catalog
from .errors import IndexLockedError, IndexNotFoundError, SpaceMismatchError
from .index import VectorIndex
from .space.spec import SpaceSpec


class Store:
    LOCK = ".lock"

    def __init__(self, root: str | os.PathLike, *, create: bool = False, readonly: bool = False) -> None:
        self.root = Path(os.path.expanduser(os.fspath(root))).resolve()
        if not create and not (self.root / Catalog.FILE).is_file():
            what = "does not exist" if not self.root.exists() else "is not an mmretrieval index (no catalog.sqlite)"
            raise IndexNotFoundError(f"{self.root} {what}; create one with `mmr index FOLDER --index {self.root}`")
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        self.readonly = readonly
        self.catalog = Catalog(self.root / Catalog.FILE, create=create, readonly=readonly)
        self._lock_fd: int | None = None
        self.vectors: VectorIndex | None = None
        self._vectors_stamp: str | None = None

    # --- space
    @property
    def vectors_path(self) -> Path:
        return self.root / (self.catalog.get_meta("vectors_file") or VectorIndex.FILE)

    def space_record(self) -> dict[str, Any] | None:
        raw = self.catalog.get_meta("space")
        return None if raw is None else json.loads(raw)

    def stored_spec(self) -> SpaceSpec | None:
        rec = self.space_record()
        return None if rec is None else SpaceSpec.from_dict(rec["spec"])

    def init_space(self, spec: SpaceSpec, fingerprint: str, dim: int, precision: str = "fp32") -> None:
        rec = {"spec": spec.to_dict(), "fingerprint": fingerprint, "dim": dim, "metric": spec.metric,
               "precision": precision}
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
            name = self.catalog.get_meta("vectors_file")
            path = self.root / (name or VectorIndex.FILE)
            try:
                self.vectors = VectorIndex.load(path) if name or path.is_file() else VectorIndex.create(dim)
            except FileNotFoundError:
                continue  # a writer committed a newer file and removed this one meanwhile: read the name again
            self._vectors_stamp = name
            break
        else:
            raise IndexNotFoundError(f"the vector file named by the catalog of {self.root} is missing; "
                                     f"run `mmr check --repair --index {self.root}`")
        if self.vectors.dim != dim:
            raise SpaceMismatchError(f"vector index dim {self.vectors.dim} != space dim {dim}")
        return self.vectors

    def refresh_vectors(self, dim: int) -> bool:
        """Reload the vectors if another process committed a newer generation. Returns True if reloaded."""
        if self.catalog.get_meta("vectors_file") != self._vectors_stamp:
            self.load_vectors(dim)
            return True
        return False

    # --- writing
    def acquire_lock(self) -> None:
        if self._lock_fd is not None:
            return
        fd = os.open(self.root / self.LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 64).decode(errors="replace").strip()
            finally:
                os.close(fd)
            raise IndexLockedError(
                f"another process{f' (pid {holder})' if holder else ''} is writing to the index at {self.root}; "
                f"wait for it to finish (searches keep working meanwhile)") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    @property
    def vectors_stamp(self) -> str | None:
        """Names the committed vector generation loaded here; changes at every commit."""
        return self._vectors_stamp

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

    def checkpoint(self) -> None:
        """Make everything so far durable: a new vector file first, then the catalog that names it."""
        assert self.vectors is not None
        gen = int(self.catalog.get_meta("generation") or 0) + 1
        name = f"vectors.{gen:08d}.faiss"
        self.vectors.save(self.root / name)
        self.catalog.begin()
        self.catalog.set_meta("vectors_file", name)
        self.catalog.set_meta("generation", str(gen))
        self.catalog.commit()
        self._vectors_stamp = name
        self.remove_stale_vector_files()

    def remove_stale_vector_files(self) -> None:
        """Delete vector files the committed catalog does not name (older generations, killed runs)."""
        keep = self.catalog.get_meta("vectors_file")
        for f in self.root.glob("vectors*.faiss"):
            if f.name != keep:
                try:
                    f.unlink()
                except OSError:
                    pass
        for f in self.root.glob("vectors*.faiss.*.tmp"):
            try:
                f.unlink()
            except OSError:
                pass

    def reconcile(self) -> dict[str, int]:
        """Make catalog and vectors agree (a safety net; the commit protocol keeps them so); returns what was fixed."""
        assert self.vectors is not None
        self.remove_stale_vector_files()
        idx_ids = self.vectors.ids()
        cat_ids = self.catalog.item_ids()
        extra = np.setdiff1d(idx_ids, cat_ids)
        missing = np.setdiff1d(cat_ids, idx_ids)
        fixed = {"orphan_vectors": int(extra.size), "items_without_vector": int(missing.size), "files_reset": 0}
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

    def close(self) -> None:
        try:
            self.catalog.rollback()
        finally:
            self.release_lock()
            self.catalog.close()
