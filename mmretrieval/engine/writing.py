"""Every write to an index, each under the writer's lock (`writing()`): indexing, committing vectors made
elsewhere, removing files, compacting the vector segments, storing a calibration."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

from ..catalog import IndexedContents
from ..encoders.pixels import max_pixels
from ..errors import UsageError
from ..ingest.commit import Committer
from ..ingest.embed import EmbeddedFile
from ..ingest.indexer import Indexer, IndexReport
from ..ingest.plan import Plan
from ..ingest.walk import normalise_roots, under
from ..options import ItemOptions, RayOptions

if TYPE_CHECKING:
    from .facade import Engine

STAGING_DIR = "staging"  # under the index: shards embedded on Ray, kept until committed
# How long a write waits for another process's write before IndexLockedError: an agent's note or a short index run
# holds the lock for moments, and a user's command should not fail for that.
LOCK_WAIT = 10.0


class Writer:
    """The single writer of one engine's index."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def check_writable(self) -> None:
        if self.engine.readonly:
            raise UsageError("this engine was opened read-only")

    @contextmanager
    def writing(self, *, reconcile: bool = True, wait: float = LOCK_WAIT) -> Iterator[dict[str, int]]:
        """Hold the index for writing: this process's lock, then the index's own (while another process writes,
        wait up to `wait` seconds, then IndexLockedError), after repairing what a crash left half-done
        (`reconcile`; yields what it repaired)."""
        self.check_writable()
        store = self.engine.store
        with self.engine._lock:
            store.acquire_lock(wait)
            try:
                if store.switched():  # another process moved the index to another space: write to that one
                    self.engine._reopen()
                    store = self.engine.store
                # Another process may have committed since these vectors were loaded: catch up first, or the
                # reconcile below would take its new items for items without vectors and forget their files.
                store.refresh_vectors(self.engine.dim)
                yield store.reconcile() if reconcile else {}
            finally:
                self.engine.store.release_lock()

    def index(self, paths: Iterable[str | os.PathLike], *, batch_size: int = 32, workers: int | None = None,
              progress: bool = False, checkpoint_seconds: float = 30.0, pool_audio: bool | None = None,
              ocr: str | None = None,
              index_type: str | None = None, memory_budget: int | None = None,
              ray: RayOptions | None = None, refit: bool = True) -> IndexReport:
        """`Engine.index`: plan, embed, commit under the writer's lock. `refit=False` leaves the index type and
        the relevance profile to the next run (a migration's sample: a few files, timed)."""
        paths = list(paths) if not isinstance(paths, (str, os.PathLike)) else [paths]
        if not paths:
            raise UsageError("give at least one file or folder to index")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise UsageError(f"batch_size must be a positive integer, got {batch_size!r}")
        for p in paths:
            if not os.path.exists(os.path.expanduser(os.fspath(p))):
                raise UsageError(f"nothing to index at {p}: no such file or folder")
        max_pixels()  # a bad $MMR_MAX_PIXELS is the user's setting, not every image's problem
        roots = [r for r in normalise_roots(paths) if not under(r, [str(self.engine.path)])]
        with self.writing() as repaired:
            items = self.engine.policy.item_options(pool_audio, ocr)
            indexer = Indexer(self.engine.store, self.engine.space, batch_size=batch_size,
                              workers=workers or None,
                              checkpoint_seconds=checkpoint_seconds, progress=progress, options=items)
            indexer.report.repaired = repaired
            self.engine.policy.remember(index_type, memory_budget)
            embed, staging = None, None
            if ray is not None:
                embed, staging = self._ray_embedder(ray, batch_size, workers or None, items)
            result = indexer.run(roots, embed=embed.stream if embed else None)
            self.engine.memory.embed_pending()  # memories whose vectors a repair had to forget
            if embed is not None:
                result.distributed = embed.summary
                if not ray.keep_shards:
                    staging.clear()  # committed: the staged copies are of no further use
            if refit:
                self.engine.policy.fit()
                self.engine.relevance.store_profile_if_stale()
            return result

    def _ray_embedder(self, options: RayOptions, batch_size: int, workers: int | None, items: ItemOptions):
        from ..ingest.distributed import RayEmbedder, _ray
        from ..ingest.staging import Staging

        _ray()  # Ray Data is installed, or the user learns what to install before any work
        self.engine.space  # noqa: B018  (the weights load, and are checked, here before any node loads them)
        staging = Staging(self.engine.path / STAGING_DIR, self.engine.store.space_record(), items)
        e = self.engine
        return RayEmbedder(e.spec.to_dict(), e.precision, staging, options, jpeg_draft=e.jpeg_draft,
                           batch_size=batch_size, workers=workers, items=items), staging

    def add_embeddings(self, files: Iterable[EmbeddedFile], *, checkpoint_seconds: float = 30.0) -> IndexReport:
        """`Engine.add_embeddings`: commit files embedded elsewhere, checked first."""
        files = list(files)
        for f in files:
            _check_embedded(f, self.engine.dim)
        with self.writing() as repaired:
            fingerprint = self.engine.store.space_record()["fingerprint"]  # after following any switch
            report = IndexReport()
            report.repaired = repaired
            t0 = last = time.monotonic()
            cat = self.engine.store.catalog
            plan = Plan(roots=[], present_by_hash=IndexedContents(cat))  # looked up per hash: no scan
            committer = Committer(self.engine.store, plan, fingerprint, report,
                                  self.engine.policy.item_options(None).to_dict())
            self.engine.store.begin()
            try:
                for f in files:
                    committer.apply(f)
                    if time.monotonic() - last > checkpoint_seconds:
                        committer.flush()
                        self.engine.store.checkpoint()
                        self.engine.store.begin()
                        last = time.monotonic()
                committer.flush()
                self.engine.store.checkpoint()
                cat.commit()
            except BaseException:
                cat.rollback()
                raise
            self.engine.policy.fit()
            self.engine.relevance.store_profile_if_stale()
            report.seconds = time.monotonic() - t0
            return report

    def remove(self, paths: Iterable[str | os.PathLike]) -> int:
        """Forget every indexed file under `paths` (files stay on disk). Returns files removed."""
        paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        roots = normalise_roots(paths)
        with self.writing():
            self.engine.store.begin()
            rows = list(self.engine.store.catalog.files(under=roots).values())
            options = self.engine.policy.item_options(None).to_dict()
            for r in rows:  # re-adding the folder later costs no encoding
                self.engine.store.keep_vectors(r, options)
            ids = [self.engine.store.catalog.delete_file(r.id) for r in rows]
            if ids:  # one removal: on IVF and HNSW each removal rebuilds the structure
                self.engine.store.vectors.remove(np.concatenate(ids))
            self.engine.store.checkpoint()
            self.engine.relevance.store_profile_if_stale()
            return len(rows)

    def compact(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Write the vectors as one base file, merging the delta segments. Returns the storage before and after
        (`Store.segment_stats`). Checkpoints do this by themselves once the deltas outgrow a share of the base."""
        with self.writing(reconcile=False):
            before = self.engine.store.segment_stats()
            self.engine.store.begin()
            self.engine.store.checkpoint(compact=True)
            return before, self.engine.store.segment_stats()

    def repair(self) -> dict[str, int]:
        """Make catalog and vectors agree now (what `check(repair=True)` does); returns what was fixed."""
        with self.writing() as fixed:
            store = self.engine.store
            missing = store.vectors.without_exact_row()
            if missing.size:  # files changed from outside: the codes' approximations stand in, said here
                store.vectors.exact.add(missing, store.vectors.index.reconstruct_batch(missing))
                store.vectors.needs_base = True
                store.begin()
                store.checkpoint()
            return {**fixed, "exact_rows_from_codes": int(missing.size)}

    def calibrate(self, pairs_file: str | os.PathLike, *, k: int = 10) -> dict[str, Any]:
        """Fit calibrated relevance on labelled pairs (JSONL/CSV: image or audio, caption, label) and store it in
        the index: per pair of modalities, P(relevant | null z-score) over the top-k hits of every query."""
        from ..relevance.calibration import MIN_EACH, Calibration, fit_logistic
        from ..relevance.pairs import encode_pairs, top_hits
        from ..train.pairs import read_pairs

        self.check_writable()
        pairs = read_pairs(pairs_file)
        ps = encode_pairs(self.engine.space, pairs)
        cal = Calibration(self.engine.space.fingerprint, source=str(Path(pairs_file).expanduser().resolve()))
        left_out: dict[str, str] = {}
        for qm, rm in ps.pairs_of_modalities():
            obs = top_hits(ps, qm, rm, k=k)
            pos = int(obs.relevant.sum())
            neg = int(obs.relevant.size - pos)
            if min(pos, neg) < MIN_EACH:
                left_out[f"{qm}->{rm}"] = (f"{pos} relevant and {neg} irrelevant hits; at least {MIN_EACH} of each are "
                                           f"needed (uncalibrated relevance is used)")
                continue
            cal.pairs[f"{qm}->{rm}"] = fit_logistic(obs.z, obs.scores, obs.relevant)
        if not cal.pairs:
            raise UsageError(f"{pairs_file}: no pair of modalities has enough relevant and irrelevant hits to fit "
                             f"({'; '.join(f'{k}: {v}' for k, v in left_out.items())})")
        with self.writing(reconcile=False):
            self.engine.relevance.save_calibration(cal)
        return {**cal.to_dict(), "left_out": left_out, "labelled": ps.labelled,
                "skipped_files": [{"path": p, "reason": r} for p, r in ps.skipped]}


def _check_embedded(f: EmbeddedFile, dim: int) -> None:
    if f.error is not None or f.reuse:
        return
    n = len(f.items)
    v = None if f.vectors is None else np.asarray(f.vectors)
    if v is None or v.shape != (n, dim) or v.dtype != np.float32:
        raise UsageError(f"{f.entry.path}: expected float32 vectors of shape ({n}, {dim}), one per item, got "
                         f"{None if v is None else (v.shape, str(v.dtype))}")
    if n and (not np.isfinite(v).all() or np.abs(np.linalg.norm(v, axis=1) - 1).max() > 1e-3):
        raise UsageError(f"{f.entry.path}: vectors must be finite and L2-normalised")
