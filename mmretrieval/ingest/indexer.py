"""Mark-and-sweep incremental indexing (as rclip does), in three parts with clean seams:

1. plan (`plan.py`): walk the roots and compare each file with the catalog by (size, mtime): unchanged
   files cost nothing; the rest is what to embed, and what vanished;
2. embed (`embed.py`): new or changed files are read once, hashed and decoded in worker threads, ahead
   of batched encoding; contents the index already holds are not decoded (moves and copies). No catalog
   state: the same step can run in another process or on another machine;
3. commit (`commit.py`): the single writer assigns ids and writes catalog rows and vectors; a file whose
   hash matches one that vanished is a move, one matching a file still present is a copy; files that
   vanished are swept. Checkpoints every `checkpoint_seconds` make the work durable.
One bad file is recorded with its reason and skipped; it never ends the run.
"""
from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ..options import ItemOptions
from ..store import Store
from ..embedding_cache import content_key, key as cache_key
from .commit import Committer
from .embed import ENCODER_BUG, EmbeddedFile, Embedder  # noqa: F401  (ENCODER_BUG: the reason an encoder failure gives)
from .plan import Plan, make_plan

if TYPE_CHECKING:  # the space layer (torch) is the caller's; this module runs what it is given
    from ..space.runtime import Space


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
    distributed: dict[str, Any] | None = None  # with --ray: shards, actors, nodes, files taken from staged shards
    memories: int = 0  # an agent's memories taken in (mmr import)
    files_from_cache: int = 0  # committed from the embedding cache: content seen before, nothing encoded
    cache_entries: int = 0  # embedding cache entries taken in (mmr import of an export made --with-cache)

    @property
    def ignored_by_ext(self) -> Counter:
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
            "files_from_cache": self.files_from_cache, "cache_entries": self.cache_entries,
            "items_removed": self.items_removed,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "still_skipped": [{"path": p, "reason": r} for p, r in self.still_skipped],
            "repaired": self.repaired, "ignored": dict(self.ignored_by_ext), "ignored_files": list(self.ignored),
            "notes": [{"path": p, "note": n} for p, n in self.notes],
            "seconds": round(self.seconds, 3),
            "items_per_second": round(self.items_per_second, 2),
            **({"distributed": self.distributed} if self.distributed is not None else {}),
        }


class Indexer:
    def __init__(self, store: Store, space: Space, *, batch_size: int = 32, workers: int | None = None,
                 checkpoint_seconds: float = 30.0, progress: bool = False, options: ItemOptions | None = None) -> None:
        self.store = store
        self.space = space
        self.batch_size = batch_size
        self.workers = workers  # None: the Embedder's default
        self.checkpoint_seconds = checkpoint_seconds
        self.progress = progress
        self.options = options or ItemOptions()
        self.report = IndexReport()

    def run(self, roots: list[str], embed: Callable[[Plan], Iterator[EmbeddedFile]] | None = None) -> IndexReport:
        """Plan, embed, commit. `embed`: how the plan's files become vectors (in plan order); default: here,
        in this process (`Embedder`); `distributed.RayEmbedder.stream` embeds them on a Ray cluster."""
        t0 = time.perf_counter()
        store, report = self.store, self.report
        plan = make_plan(store.catalog, roots)
        report.files_unchanged += plan.unchanged
        report.still_skipped += plan.still_skipped
        report.skipped += plan.walk_errors
        report.ignored += plan.ignored
        options = self.options.to_dict()
        if embed is None:
            fp = self.space.fingerprint

            towers = getattr(self.space, "modality_towers", None)
            if towers:
                store.note_modality_towers(fp, towers)

            def cached(digest: str, modality: str) -> Any:
                return store.cache.get(cache_key(fp, digest, modality, options),
                                       content=content_key(digest, modality, options), towers=towers)

            embed = Embedder(self.space, batch_size=self.batch_size, workers=self.workers, options=self.options,
                             reusable=plan.reusable, cached=cached if store.cache.enabled else None).stream_plan
        committer = Committer(store, plan, self.space.fingerprint, report, options)
        store.begin()
        last = time.monotonic()
        bar = _progress(len(plan.todo), self.progress)
        try:
            for f in embed(plan):
                committer.apply(f)
                bar.update(1)
                if time.monotonic() - last > self.checkpoint_seconds:
                    committer.flush()
                    store.checkpoint()
                    store.begin()
                    last = time.monotonic()
            committer.sweep()
            committer.flush()
            store.checkpoint()
            store.catalog.commit()  # close the (empty) transaction the checkpoint opened
        except BaseException:
            store.catalog.rollback()
            raise
        finally:
            bar.close()
        report.seconds = time.perf_counter() - t0
        return report


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="file", disable=not enabled, dynamic_ncols=True, leave=False)
