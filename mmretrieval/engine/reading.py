"""Reading an index as a whole: its vectors as a stream, its statistics, and whether catalog and vectors agree."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

from ..index.vectors_stream import CHUNK, VectorChunk
from ..options import ItemOptions
from ..query import parse_types, result_lanes
from ..space.precision import describe

if TYPE_CHECKING:
    from .facade import Engine


class Reader:
    """What an engine reads of its whole index (nothing here writes, except `check(repair=True)` through the
    writer)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def vectors(self, types: Iterable[str] | str | None = None, *, chunk: int = CHUNK,
                stored: bool = False) -> Iterator[VectorChunk]:
        """Every stored vector with its item's id and modality, `chunk` at a time, modality by modality (`types`:
        these only), ids ascending within each: for reading the whole collection (export, audits, clusters)
        without holding it decoded at once. Vectors are float32 unit rows; `stored=True` gives them as the index
        holds them where it holds floats (float16 in ivf-fp16), without renormalising."""
        lanes = self.lanes(types)
        vectors = self.engine.store.vectors  # as refreshed by `lanes`
        for m, ids in lanes:
            for part, vecs in vectors.iter_vectors(ids, chunk=chunk, stored=stored):
                yield VectorChunk(part, np.full(part.size, m, dtype=object), vecs)

    def lanes(self, types: Iterable[str] | str | None = None) -> list[tuple[str, np.ndarray]]:
        """(item modality, ids of its items that have a vector, ascending) of each lane the types take in (a
        container type such as video: its files' items of every modality), the index's vectors refreshed first;
        notes are left out."""
        mods = parse_types(types, "") if types is not None else None
        with self.engine._lock:
            if not self.engine.store.holds_lock:
                self.engine.store.refresh_vectors(self.engine.dim)
            cat = self.engine.store.catalog
            present = np.sort(self.engine.store.vectors.ids())
            lanes = result_lanes(mods) if mods else [(m, m) for m in sorted(cat.counts()["items"])]
            return [(m, np.intersect1d(cat.lane_item_ids(m, t if t != m else None), present)) for t, m in lanes]

    def stats(self) -> dict[str, Any]:
        self.engine.follow_switch()
        rec = self.engine.store.space_record() or {}
        counts = self.engine.store.catalog.counts()
        size = sum(f.stat().st_size for f in self.engine.path.iterdir() if f.is_file())
        spec = rec.get("spec", {})
        return {
            "index": str(self.engine.path),
            "space": {"name": spec.get("name"), "fingerprint": rec.get("fingerprint"), "metric": rec.get("metric"),
                      "dim": rec.get("dim"), "clip": spec.get("clip"), "precision": describe(self.engine.precision),
                      "jpeg_draft": self.engine.jpeg_draft,
                      "audio": None if not spec.get("audio") else spec["audio"].get("config", {}).get("arch")},
            "items": counts["items"],
            "items_total": sum(counts["items"].values()),
            "vectors": self.engine.store.vectors.ntotal,
            "files_indexed": counts["files_indexed"],
            "memories": counts["memories"],
            "files_skipped": counts["files_skipped"],
            "index_type": self.engine.store.vectors.kind,
            "index_description": self.engine.store.vectors.description,
            "index_policy": self.engine.store.catalog.get_meta("index_type") or "auto",
            "item_options": json.loads(self.engine.store.catalog.get_meta(ItemOptions.META_KEY) or "null"),
            "bytes_on_disk": size,
            "vector_segments": self.engine.store.segment_stats(),
            "embedding_cache": self.engine.store.cache.stats(),
            "migration": self.engine.migrator.status(),
            "previous_spaces": self.engine.migrator.previous(),
        }

    def check(self, repair: bool = False) -> dict[str, Any]:
        """Do catalog and vectors agree (every item has exactly one vector and vice versa)?

        With `repair`, fix what does not: drop vectors the catalog does not know and forget items
        whose vector is gone (their files are re-embedded by the next `index`); nothing known is re-embedded.
        """
        with self.engine._lock:
            fixed = self.engine.writer.repair() if repair else None
            vectors = self.engine.store.vectors
            ids = vectors.ids()
            cat = self.engine.store.catalog.item_ids()
            report = {
                "vector_files": self.engine.store.segments(),
                "vectors": int(ids.size), "items": int(cat.size),
                "duplicate_vector_ids": int(ids.size - np.unique(ids).size),
                "orphan_vectors": int(np.setdiff1d(ids, cat).size),
                "items_without_vector": int(np.setdiff1d(cat, ids).size),
                "keyword_index_mismatches": self.engine.store.catalog.keyword_index_mismatches(),
                # a compressed index re-scores from exact rows kept beside it: each vector needs one
                "vectors_without_exact_row": int(vectors.without_exact_row().size),
            }
            report["consistent"] = not (report["duplicate_vector_ids"] or report["orphan_vectors"]
                                        or report["items_without_vector"] or report["keyword_index_mismatches"]
                                        or report["vectors_without_exact_row"])
            if fixed is not None:
                report["repaired"] = fixed
            return report
