"""Views of the whole collection (`collection`): near-duplicates, clusters, outliers, a map.

This part gathers what the methods need from the index (lanes of item ids, vectors, catalog rows, the text tower
for naming) and keeps their results beside the index in `views/`, keyed by the space's fingerprint: a second call
on an unchanged index reads them back, and after a small change only the new items are searched (dupes) or
assigned to the clusters found before (clusters, outliers, map). Notes (agent memory) are never part of a view.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from ..collection import clusters as clustering
from ..collection import dupes as duping
from ..collection import projection, vocabulary
from ..errors import UsageError
from ..index.vectors_stream import unit_rows
from ..modalities import get_modality
from ..modalities.sketch import LIKENESS
from ..modalities.sketch import VERSION as SKETCH_VERSION
from ..query import parse_types

if TYPE_CHECKING:
    from .facade import Engine

VIEWS_DIR = "views"
REFIT_SHARE = 0.1   # clusters are fitted again once this share of the items is new or gone
MIN_RADIUS = 0.5    # the widest candidate search dupes accepts
MAX_MAP_SIDE = 4000


@dataclass
class DupesReport:
    groups: list[duping.DupeGroup]
    thresholds: dict[str, float]       # the likeness each modality's pairs had to reach
    radius: dict[str, float]           # the cosine its candidates were searched within
    items: dict[str, int]              # items looked at, by modality
    searched: int                      # items whose neighbours were searched this time (new since the last run)
    candidates: int                    # pairs within the radius
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"groups": [g.as_dict() for g in self.groups], "thresholds": self.thresholds, "radius": self.radius,
                "items": self.items, "searched": self.searched, "candidates": self.candidates,
                "seconds": round(self.seconds, 3)}


@dataclass
class ClustersReport:
    clusters: list[clustering.Cluster]
    k: int
    bridged: bool                       # modalities' mean directions taken out (several modalities)
    items: int
    refitted: bool                      # False: the clusters found before, new items assigned to them
    seconds: float
    model: clustering.Model | None = field(default=None, repr=False)
    assignment: clustering.Assignment | None = field(default=None, repr=False)

    def as_dict(self, members: int | None = 12) -> dict[str, Any]:
        return {"k": self.k, "bridged": self.bridged, "items": self.items, "refitted": self.refitted,
                "seconds": round(self.seconds, 3), "clusters": [c.as_dict(members) for c in self.clusters]}


class Views:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ----------------------------------------------------------------- shared
    @property
    def _dir(self) -> Path:
        return self.engine.path / VIEWS_DIR

    def _key(self) -> str:
        return ((self.engine.store.space_record() or {}).get("fingerprint") or "unknown")[:16]

    def _save(self, name: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Atomically, or not at all (a read-only folder: the view is computed again next time)."""
        try:
            self._dir.mkdir(exist_ok=True)
            tmp = self._dir / f".{name}.{os.getpid()}.tmp.npz"
            np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
            os.replace(tmp, self._dir / f"{name}.npz")
        except OSError:
            pass

    def _load(self, name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        f = self._dir / f"{name}.npz"
        if not f.is_file():
            return None
        try:
            with np.load(f, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files if k != "meta"}
                return arrays, json.loads(str(z["meta"]))
        except (OSError, ValueError, KeyError):
            return None

    def _lanes(self, types: Iterable[str] | str | None) -> list[tuple[str, np.ndarray]]:
        """`Reader.lanes`, one per item modality (a video type's pictures join the other pictures)."""
        self.engine.follow_switch()
        by_modality: dict[str, np.ndarray] = {}
        for m, ids in self.engine.reader.lanes(types):
            by_modality[m] = np.union1d(by_modality.get(m, np.empty(0, np.int64)), ids)
        return sorted(by_modality.items())

    # ----------------------------------------------------------------- dupes
    def dupes(self, types: Iterable[str] | str | None = None, *, threshold: float | None = None,
              radius: float | None = None) -> DupesReport:
        """Groups of near-duplicates (see `collection.dupes`), largest first, best member first in each.

        `threshold` (0..1): the likeness of content a pair must reach (default: each modality's measured
        `modalities.sketch.LIKENESS`); lower it to take in near neighbours (burst shots). `radius`: the cosine
        within which candidates are searched (default `collection.dupes.RADIUS`)."""
        # A radius under MIN_RADIUS would make most pairs of the collection candidates (all pairs at 0): nothing
        # that far apart is a copy.
        for name, v, low in (("threshold", threshold, 0.0), ("radius", radius, MIN_RADIUS)):
            if v is not None and not (isinstance(v, (int, float)) and low < float(v) <= 1.0):
                raise UsageError(f"{name} must be a number in ({low:g}, 1], got {v!r}")
        t0 = time.perf_counter()
        e = self.engine
        groups: list[duping.DupeGroup] = []
        thresholds, radii, items = {}, {}, {}
        searched = candidates = 0
        copies = e.store.catalog.copies()
        for modality, ids in self._lanes(types):
            m = get_modality(modality)
            r = float(radius if radius is not None else duping.RADIUS.get(modality, duping.DEFAULT_RADIUS))
            t = float(threshold if threshold is not None else LIKENESS.get(modality, 0.9))
            thresholds[modality], radii[modality], items[modality] = t, r, int(ids.size)
            name = f"dupes-{modality}-{self._key()}"
            cache = self._pair_cache(name)
            cache, n = duping.candidate_pairs(ids, r, cache, self._neighbours)
            searched += n
            candidates += int(cache.pairs.shape[0])
            exact = self._copy_items(copies, ids)
            involved = np.unique(np.concatenate([cache.pairs.reshape(-1), *exact]))
            rows = e.store.catalog.items(involved.tolist())
            facts = e.store.catalog.file_facts({r.file_id for r in rows.values()})
            members = {i: duping.Member(i, r.file_id, r.path, r.locator, facts.get(r.file_id, (0, None, None))[0],
                                        r.date, facts.get(r.file_id, (0, None, None))[1], text=r.text)
                       for i, r in rows.items()}
            sketch = (lambda i, m=m: m.sketch(rows[i])) if m.sketch is not None else None
            groups += duping.group_dupes(modality, cache, members, sketch, m.likeness, t, exact, self._cosine)
            self._save_pair_cache(name, cache)
        groups.sort(key=lambda g: (-len(g.members), g.modality, g.members[0].path))
        return DupesReport(groups, thresholds, radii, items, searched, candidates, time.perf_counter() - t0)

    def _cosine(self, a: int, b: int) -> float:
        with self.engine._lock:
            va, vb = unit_rows(self.engine.store.vectors.reconstruct(np.array([a, b], np.int64)))
        return float(va @ vb)

    def _neighbours(self, query_ids: np.ndarray, radius: float, allowed: np.ndarray):
        from ..index.vector_index import IdFilter

        e = self.engine
        filt = IdFilter(allowed)
        with e._lock:
            vectors = e.store.vectors
            for part, vecs in vectors.iter_vectors(query_ids, chunk=1024):
                for q, (hit_ids, scores) in zip(part, vectors.range_search(vecs, radius, filt,
                                                                           nprobe=duping.CANDIDATE_NPROBE)):
                    yield int(q), hit_ids, scores

    def _copy_items(self, copies: list[list[int]], lane_ids: np.ndarray) -> list[np.ndarray]:
        """Item ids of byte-for-byte copies in this lane: the items at one position of files sharing a hash."""
        out = []
        cat = self.engine.store.catalog
        lane = set(map(int, lane_ids))
        for files in copies:
            by_ordinal: dict[tuple, list[int]] = {}
            for f in files:
                for row in cat.items_of_file(f):
                    if row.id in lane:
                        by_ordinal.setdefault((row.ordinal, json.dumps(row.locator, sort_keys=True)), []).append(row.id)
            out += [np.array(sorted(v), np.int64) for v in by_ordinal.values() if len(v) > 1]
        return out

    def _pair_cache(self, name: str) -> duping.PairCache | None:
        got = self._load(name)
        if got is None:
            return None
        a, meta = got
        if meta.get("sketch") != SKETCH_VERSION:  # made by other sketches: the pairs stand, their likeness not
            a = {**a, "likeness_pairs": np.empty((0, 2), np.int64), "likeness_values": np.empty(0, np.float32)}
        lk = a.get("likeness_pairs", np.empty((0, 2), np.int64))
        lv = a.get("likeness_values", np.empty(0, np.float32))
        return duping.PairCache(float(meta["radius"]), a["ids"], a["pairs"].reshape(-1, 2), a["cosines"],
                                {(int(x), int(y)): float(v) for (x, y), v in zip(lk, lv)})

    def _save_pair_cache(self, name: str, c: duping.PairCache) -> None:
        keys = np.array(list(c.likeness), np.int64).reshape(-1, 2)
        self._save(name, {"ids": c.ids, "pairs": c.pairs, "cosines": c.cosines, "likeness_pairs": keys,
                          "likeness_values": np.array(list(c.likeness.values()), np.float32)},
                   {"radius": c.radius, "sketch": SKETCH_VERSION})

    # ----------------------------------------------------------------- clusters
    def clusters(self, types: Iterable[str] | str | None = None, *, k: int | str | None = None,
                 bridge: bool = False, refit: bool = False) -> ClustersReport:
        """k-means clusters of the collection (k None or "auto": chosen by silhouette), each named zero-shot (see
        `collection.clusters`), largest first. The centroids and every item's cluster are kept in views/: a call
        on an unchanged index reads them back; new items are assigned to the clusters found before (items gone:
        every item is assigned again) until REFIT_SHARE of the items changed; `refit` fits them again."""
        if k == "auto":
            k = None
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise UsageError(f"k must be a positive integer or auto, got {k!r}")
        t0 = time.perf_counter()
        lanes = [(m, ids) for m, ids in self._lanes(types) if ids.size]
        total = sum(int(ids.size) for _, ids in lanes)
        if not total:
            return ClustersReport([], 0, False, 0, False, time.perf_counter() - t0)
        model, a, refitted = self._assignment(lanes, k, bool(bridge), types, refit)
        found = clustering.clusters_of(model, a)
        clustering.name_clusters(found, a, vocabulary.LABELS, self._label_vectors(set(a.whole)))
        self._nearest_passages(found, a)
        return ClustersReport(found, model.k, model.bridge, total, refitted, time.perf_counter() - t0, model, a)

    def _stream(self, lanes: list[tuple[str, np.ndarray]]):
        """(ids, modality, unit vectors) of the lanes' items, a chunk at a time."""
        vectors = self.engine.store.vectors
        for m, ids in lanes:
            for part, vecs in vectors.iter_vectors(ids):
                yield part, np.full(part.size, m, dtype=object), unit_rows(vecs)

    def _sample(self, lanes: list[tuple[str, np.ndarray]], n: int) -> tuple[np.ndarray, np.ndarray]:
        """(modality, unit vectors) of at most `n` items drawn evenly at random from the lanes."""
        total = sum(int(ids.size) for _, ids in lanes)
        rng = np.random.default_rng(clustering.SEED)
        picked = [(m, np.sort(ids if total <= n else ids[rng.random(ids.size) < n / total])) for m, ids in lanes]
        mods, vecs = [], []
        for _, m, v in self._stream([p for p in picked if p[1].size]):
            mods.append(m)
            vecs.append(v)
        if not vecs:
            return np.empty(0, object), np.empty((0, self.engine.dim), np.float32)
        return np.concatenate(mods), np.concatenate(vecs)

    def _assignment(self, lanes: list[tuple[str, np.ndarray]], k: int | None, bridge: bool, types: Any,
                    refit: bool) -> tuple[clustering.Model, clustering.Assignment, bool]:
        params = {"k": k, "bridge": bridge, "types": sorted(parse_types(types, "")) if types is not None else None}
        name = f"clusters-{self._key()}"
        ids = np.concatenate([i for _, i in lanes])
        got = None if refit else self._load_clusters(name, params)
        if got is not None:
            model, a = got
            new, gone = np.setdiff1d(ids, a.ids), np.setdiff1d(a.ids, ids)
            if new.size + gone.size <= REFIT_SHARE * ids.size:
                if gone.size:  # sums cannot lose vectors that are gone: assign everything again (no new fit)
                    a = clustering.Assignment.empty()
                    for part, mods, vecs in self._stream(lanes):
                        a.add(model, part, mods, vecs)
                elif new.size:
                    fresh = [(m, np.intersect1d(i, new)) for m, i in lanes]
                    for part, mods, vecs in self._stream([f for f in fresh if f[1].size]):
                        a.add(model, part, mods, vecs)
                if new.size or gone.size:
                    self._save_clusters(name, params, model, a)
                return model, a, False
        mods, vecs = self._sample(lanes, clustering.sample_size(k))
        model = clustering.train(mods, vecs, k, bridge)
        a = clustering.Assignment.empty()
        for part, m, v in self._stream(lanes):
            a.add(model, part, m, v)
        self._save_clusters(name, params, model, a)
        return model, a, True

    def _save_clusters(self, name: str, params: dict[str, Any], model: clustering.Model,
                       a: clustering.Assignment) -> None:
        mods = sorted(a.whole)
        sums = np.zeros((model.k, len(mods), model.centroids.shape[1]), np.float64)
        for (c, m), v in a.sums.items():
            sums[c, mods.index(m)] = v
        code = np.searchsorted(np.array(mods, dtype=object), a.modality).astype(np.int16) if mods else \
            np.empty(0, np.int16)
        self._save(name, {"centroids": model.centroids, "ids": a.ids, "labels": a.labels, "cosines": a.cosines,
                          "modality": code, "sums": sums, "whole": np.stack([a.whole[m] for m in mods]),
                          **{f"offset_{m}": v for m, v in model.offsets.items()}},
                   {"k": model.k, "bridge": model.bridge, "offset_modalities": sorted(model.offsets),
                    "modalities": mods, "params": params})

    def _load_clusters(self, name: str, params: dict[str, Any]
                       ) -> tuple[clustering.Model, clustering.Assignment] | None:
        got = self._load(name)
        if got is None or got[1].get("params") != params:
            return None
        arr, meta = got
        mods = meta["modalities"]
        model = clustering.Model(int(meta["k"]), bool(meta["bridge"]), arr["centroids"],
                                 {m: arr[f"offset_{m}"] for m in meta["offset_modalities"]})
        a = clustering.Assignment(arr["ids"], np.array(mods, dtype=object)[arr["modality"]], arr["labels"],
                                  arr["cosines"])
        for c in range(model.k):
            for j, m in enumerate(mods):
                if arr["sums"][c, j].any():
                    a.sums[(c, m)] = arr["sums"][c, j]
        a.whole = {m: arr["whole"][j] for j, m in enumerate(mods)}
        return model, a

    def _label_vectors(self, modalities: set[str]) -> dict[str, np.ndarray]:
        """The vocabulary's vectors through each modality's templates, embedded once per space (kept in views/)."""
        name = f"labels-{self._key()}"
        got = self._load(name)
        have = got[0] if got is not None and got[1].get("labels") == list(vocabulary.LABELS) else {}
        missing = [m for m in sorted(modalities) if m not in have]
        if missing:
            encoder = self.engine.query_encoder("text")
            if encoder is None:
                return dict(have)  # a space without a text tower names nothing
            have = dict(have)
            for m in missing:
                prompts = vocabulary.prompts(m)
                flat = encoder.encode([p for ps in prompts for p in ps])
                sizes = np.cumsum([0] + [len(ps) for ps in prompts])
                have[m] = unit_rows(np.stack([flat[a:b].mean(axis=0) for a, b in zip(sizes[:-1], sizes[1:])]))
            self._save(name, have, {"labels": list(vocabulary.LABELS)})
        return {m: have[m] for m in modalities if m in have}

    def _nearest_passages(self, found: list[clustering.Cluster], a: clustering.Assignment) -> None:
        """Each cluster's nearest passage of the collection's own texts, where it has any."""
        e = self.engine
        texts = dict(self._lanes(["text"])).get("text")
        if texts is None or not texts.size or not found:
            return
        centres = np.stack([clustering.centre(a, c.id) for c in found]).astype(np.float32)
        with e._lock:
            _, hit = e.store.vectors.search(centres, 1, texts)
            rows = e.store.catalog.items([int(i) for i in hit[:, 0] if i >= 0])
        for c, i in zip(found, hit[:, 0]):
            if int(i) in rows and rows[int(i)].text:
                c.passage = (int(i), " ".join(rows[int(i)].text.split())[:200])

    # ----------------------------------------------------------------- outliers and the map
    def outliers(self, types: Iterable[str] | str | None = None, *, k: int | str | None = None,
                 z: float = clustering.OUTLIER_Z, limit: int | None = 50) -> dict[str, Any]:
        """Items that belong nowhere: much farther from their cluster's centre than its other members (robust
        z-score of the distance, at least `z`) and with fewer close neighbours than usual (their nearest other
        item less alike than the median item's nearest: a pair of copies far from every centre is not an
        anomaly), most unusual first, each with its nearest cluster and its nearest other item."""
        if isinstance(z, bool) or not isinstance(z, (int, float)) or not np.isfinite(z) or z <= 0:
            raise UsageError(f"z must be a positive number, got {z!r}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise UsageError(f"limit must be a positive integer, got {limit!r}")
        report = self.clusters(types, k=k)
        if report.model is None or report.assignment is None:
            return {"outliers": [], "total": 0, "items": 0, "z": z, "k": 0, "typical_nearest": {}}
        a = report.assignment
        names = {c.id: c.name for c in report.clusters}
        lanes = dict(self._lanes(types))
        typical = {m: self._typical_nearest(ids) for m, ids in lanes.items()}
        row_of = {int(i): n for n, i in enumerate(a.ids)}
        kept = []
        for i, score, c in clustering.outliers(report.model, a, z):
            m = str(a.modality[row_of[i]])
            near = self._nearest_other(i, lanes.get(m))
            if near is not None and typical.get(m) is not None and near["cosine"] >= typical[m]:
                continue  # it has neighbours as close as most items do
            kept.append((i, score, c, near))
        total = len(kept)
        kept = kept[:limit] if limit is not None else kept
        with self.engine._lock:
            rows = self.engine.store.catalog.items([i for i, _, _, _ in kept])
        out = [{"item_id": i, "path": rows[i].path, "modality": rows[i].modality, "locator": rows[i].locator,
                "score": round(score, 3) if np.isfinite(score) else None, "cluster": c,
                "cluster_name": names.get(c), "nearest": near}
               for i, score, c, near in kept if i in rows]
        return {"outliers": out, "total": total, "items": report.items, "z": z, "k": report.k,
                "typical_nearest": {m: None if v is None else round(v, 4) for m, v in typical.items()}}

    def _typical_nearest(self, lane: np.ndarray) -> float | None:
        """The median cosine of an item's nearest other item in its lane (over a sample of 256)."""
        if lane.size < 3:
            return None
        rng = np.random.default_rng(0)
        sample = lane if lane.size <= 256 else np.sort(rng.choice(lane, 256, replace=False))
        with self.engine._lock:
            vecs = unit_rows(self.engine.store.vectors.reconstruct(sample))
            scores, hits = self.engine.store.vectors.search(vecs, 2, lane)
        best = [float(s[1] if h[0] == i else s[0]) for i, s, h in zip(sample, scores, hits)]
        return float(np.median(best))

    def _nearest_other(self, item_id: int, lane: np.ndarray | None) -> dict[str, Any] | None:
        if lane is None or lane.size < 2:
            return None
        with self.engine._lock:
            vec = unit_rows(self.engine.store.vectors.reconstruct(np.array([item_id], np.int64)))
            scores, hits = self.engine.store.vectors.search(vec, 2, lane)
        for s, h in zip(scores[0], hits[0]):
            if h >= 0 and int(h) != item_id:
                return {"item_id": int(h), "cosine": round(float(s), 4)}
        return None

    def map(self, types: Iterable[str] | str | None = None, *, k: int | str | None = None, method: str = "pca"
            ) -> tuple[list[dict[str, Any]], dict[int, str], ClustersReport]:
        """The collection as points in two dimensions (see `collection.projection`), each with its cluster, and
        the clusters' names. The projection is fitted on a sample and kept with the points in views/: new items
        are placed on the same axes, an unchanged index is read back."""
        if method not in projection.METHODS:
            raise UsageError(f"unknown projection {method!r}; valid: {', '.join(projection.METHODS)}")
        report = self.clusters(types, k=k)
        if report.model is None or report.assignment is None:
            return [], {}, report
        model, a = report.model, report.assignment
        lanes = [(m, ids) for m, ids in self._lanes(types) if ids.size]
        name = f"map-{self._key()}"
        params = {"method": method, "types": sorted(parse_types(types, "")) if types is not None else None,
                  "k": model.k, "bridge": model.bridge, "centroids": float(model.centroids.sum())}
        got = self._load(name)
        if got is not None and got[1].get("params") == params and method == "pca" and not report.refitted:
            arr = got[0]
            placed = dict(zip(arr["ids"].tolist(), arr["coords"]))
            proj = projection.Projection.from_axes(arr["mean"], arr["axes"])
        else:
            placed = {}
            mods, vecs = self._sample(lanes, projection.FIT_SAMPLE)
            proj = projection.Projection(model.work(vecs, mods), method)
        new = [(m, ids[~np.isin(ids, np.fromiter(placed, np.int64, len(placed)))]) for m, ids in lanes]
        for part, mods, vecs in self._stream([x for x in new if x[1].size]):
            placed.update(zip(part.tolist(), proj(model.work(vecs, mods))))
        coords = np.array([placed[int(i)] for i in a.ids], np.float32).reshape(-1, 2)
        if method == "pca":
            self._save(name, {"ids": a.ids, "coords": coords, "mean": proj.mean, "axes": proj.axes},
                       {"params": params})
        return projection.points(coords, a.ids, a.labels, a.modality), {c.id: c.name for c in report.clusters}, report

    def map_png(self, types: Iterable[str] | str | None = None, *, k: int | str | None = None, method: str = "pca",
                width: int = 1200, height: int = 900) -> bytes:
        for name, v in (("width", width), ("height", height)):
            if isinstance(v, bool) or not isinstance(v, int) or not 200 <= v <= MAX_MAP_SIDE:
                raise UsageError(f"{name} must be a whole number of pixels from 200 to {MAX_MAP_SIDE}, got {v!r}")
        pts, names, report = self.map(types, k=k, method=method)
        coords = np.array([[p["x"], p["y"]] for p in pts], np.float32).reshape(-1, 2)
        return projection.draw_png(coords, np.array([p["cluster"] for p in pts], np.int32),
                                   [p["modality"] for p in pts], names, width, height,
                                   title=f"{report.items:,} items, {report.k} clusters ({method.upper()})")
