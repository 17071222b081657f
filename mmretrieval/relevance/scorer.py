"""Relevance for the hits of one index: the profile and null sample (cached per committed state), and the
calibration if one was fitted in the index's space."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import MMRError
from ..index.vector_index import IdFilter
from ..store import Store
from .calibration import Calibration
from .profile import (
    PROBE_DEPTH,
    PROBES,
    TOP,
    Profile,
    draw_null,
    fit_curve,
    null_stats,
    pair_key,
    probe_z,
    self_labels,
    standing_top,
    z_scores,
)

PROFILE_KEY = "relevance_profile"
# Fewer items of a modality say nothing about what a random one scores: its hits get no relevance (None) and a
# search that returns them orders every hit by cosine. Fewer probe items of a query modality: the default curve.
MIN_ITEMS = 8
# The modality that says what things are: two items of another modality described by the same passages are
# relevant to each other (`RelevanceScorer._described_alike`).
DESCRIBING = "text"
# Each check of the self-labels searches again from at most this many items per pair of modalities (the first
# probes' matches; the probes beyond are left out of the fit): ~2 s per check at 100 k items on 2 cores.
CHECKED_ITEMS = 2048
CALIBRATION_KEY = "relevance_calibration"


class RelevanceScorer:
    def __init__(self, store: Store, fingerprint: str) -> None:
        self.store = store
        self.fingerprint = fingerprint
        self._key: Any = None
        self._lock = threading.Lock()
        self.profile: Profile | None = None
        self.null: dict[str, np.ndarray] = {}       # the null sample's vectors per modality ...
        self.null_ids: dict[str, np.ndarray] = {}   # ... and their ids
        self.calibration: Calibration | None = None

    # --- state
    def _counts(self) -> dict[str, int]:
        return {m: int(n) for m, n in self.store.catalog.counts()["items"].items() if n}

    def refresh(self) -> None:
        """Load (or compute, when missing or stale) the profile and null vectors for the committed state."""
        vectors = self.store.vectors
        key = (self.store.vectors_stamp, id(vectors), vectors.ntotal)
        with self._lock:
            if key == self._key:
                return
            counts = self._counts()
            raw = self.store.catalog.get_meta(PROFILE_KEY)
            profile = Profile.from_json(raw) if raw else None
            if profile is None or profile.stale(counts):
                profile = self.compute(counts)
            self.profile = profile
            present = {m: self._present_vectors(np.asarray(ids, np.int64)) for m, ids in profile.null_ids.items()}
            self.null_ids = {m: found for m, (found, _) in present.items()}
            self.null = {m: vecs for m, (_, vecs) in present.items()}
            raw = self.store.catalog.get_meta(CALIBRATION_KEY)
            cal = Calibration.from_json(raw) if raw else None
            self.calibration = cal if cal is not None and cal.fingerprint == self.fingerprint else None
            self._key = key

    def compute(self, counts: dict[str, int] | None = None, seed: int = 0) -> Profile:
        """Null samples and a self-labelled relevance curve per pair of modalities from the index's own items."""
        counts = counts if counts is not None else self._counts()
        ids = {m: self.store.catalog.item_ids([m]) for m in counts}
        null_ids = draw_null(ids, seed)
        null = {m: self._present_vectors(v)[1] for m, v in null_ids.items()}
        filters = {m: IdFilter(v) for m, v in ids.items()}
        curves = {}
        for qm, rm, found, probes, matches, got in self.probe(ids, null, PROBES, seed + 1, with_ids=True):
            z = probe_z(probes, matches, null[rm])
            group = self_labels(z, counts[rm])
            labels, rows = self._searched_back(group, found, got, qm, rm, null, filters, counts)
            if qm == rm != DESCRIBING and null.get(DESCRIBING, np.empty((0,))).shape[0] >= MIN_ITEMS:
                labels, described = self._described_alike(labels, found, got, qm, null, filters, counts)
                rows &= described
            key = pair_key(qm, rm)
            heads = np.full(z.shape, False)
            heads[:, 0] = group[:, 0] & rows
            for name, fitted in ((key, rows[:, None]), (f"{key}{TOP}", heads)):
                curve = fit_curve(np.where(fitted, z, np.nan), labels)
                if curve is not None:
                    curves[name] = curve
        return Profile(counts, {m: v.tolist() for m, v in null_ids.items()}, curves)

    def probe(self, ids: dict[str, np.ndarray], null: dict[str, np.ndarray], probes: int, seed: int,
              depth: int = PROBE_DEPTH, with_ids: bool = False) -> Iterator[tuple[Any, ...]]:
        """For each pair of modalities with enough items: up to `probes` stored items of the query modality (ids
        and vectors), and the cosines of each one's top `depth` matches among the other modality, best first; NaN
        where fewer exist (`with_ids`: and the matches' ids, -1 there)."""
        rng = np.random.default_rng(seed)
        filters = {m: IdFilter(v) for m, v in ids.items()}
        for qm, qids in ids.items():
            found, vecs = self._present_vectors(np.sort(rng.choice(qids, min(probes, qids.size), replace=False)))
            if vecs.shape[0] < MIN_ITEMS:
                continue
            for rm in ids:
                if null[rm].shape[0] < MIN_ITEMS:
                    continue
                scores, got = self._matches(found, vecs, filters[rm], depth)
                yield (qm, rm, found, vecs, scores, got) if with_ids else (qm, rm, found, vecs, scores)

    def _matches(self, found: np.ndarray, vecs: np.ndarray, allowed: IdFilter,
                 depth: int = PROBE_DEPTH) -> tuple[np.ndarray, np.ndarray]:
        """The cosines and ids of each item's top `depth` matches among `allowed`, best first. Matches from the
        item's own file are skipped: a recording's other windows or a document's other passages stand apart from
        the crowd without being what a query looks for."""
        scores, got = self.store.vectors.search(vecs, 2 * depth + 1, allowed=allowed)
        scores = np.where(got >= 0, scores, np.nan).astype(np.float64)
        own = self._file_ids(got) == self._file_ids(found)[:, None]
        order = np.argsort(own, axis=1, kind="stable")  # the others first, still best first
        scores = np.take_along_axis(np.where(own, np.nan, scores), order, axis=1)
        got = np.take_along_axis(np.where(own, -1, got), order, axis=1)
        return scores[:, :depth], got[:, :depth]

    def _groups(self, items: list[int], modality: str, null: dict[str, np.ndarray], filters: dict[str, IdFilter],
                counts: dict[str, int]) -> dict[int, tuple[set[int], set[int]]]:
        """Each item's self-labelled group among `modality` and its top `PROBE_DEPTH` matches there (ids)."""
        if not items:
            return {}
        found, vecs = self._present_vectors(np.asarray(sorted(items), np.int64))
        scores, got = self._matches(found, vecs, filters[modality])
        labels = self_labels(probe_z(vecs, scores, null[modality]), counts[modality])
        return {int(i): (set(g[lab].tolist()), set(g[g >= 0].tolist())) for i, g, lab in zip(found, got, labels)}

    def _searched_back(self, labels: np.ndarray, found: np.ndarray, got: np.ndarray, qm: str, rm: str,
                       null: dict[str, np.ndarray], filters: dict[str, IdFilter],
                       counts: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
        """A self-label stands only where the match, searching back among the probe's modality, does not find a
        group of its own that leaves the probe out of its top matches. A caption of a picture ("a red square")
        finds square-wave buzzes standing apart from the other sounds, but a buzz finds its own captions first
        and the picture's nowhere near (measured on the held-out set: 829 of 842 such labels were wrong).
        Returns the labels and the probes checked (the first ones whose matches fit `CHECKED_ITEMS`)."""
        rows = _within(CHECKED_ITEMS, [got[i][labels[i]] for i in range(len(found))])
        back = self._groups(sorted({int(r) for i in np.nonzero(rows)[0] for r in got[i][labels[i]]}), qm, null,
                            filters, counts)
        keep = labels.copy()
        for i, j in zip(*np.nonzero(labels & rows[:, None])):
            group, top = back.get(int(got[i, j]), (set(), set()))
            keep[i, j] = not group or int(found[i]) in top
        return keep, rows

    def _described_alike(self, labels: np.ndarray, found: np.ndarray, got: np.ndarray, modality: str,
                         null: dict[str, np.ndarray], filters: dict[str, IdFilter],
                         counts: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
        """Between two items of one modality, where the probe has a group of passages describing it: relevant
        when the match shares one of them. Photos of one subject taken apart (two rhythms of one sound, two
        angles of one thing) fall in different groups of their own, and one group holds look-alikes of other
        subjects; what describes them tells them apart (`docs/relevance.md`). Returns the labels and the probes
        they hold for: the first ones whose described matches fit `CHECKED_ITEMS`."""
        told = self._groups([int(p) for p in found], DESCRIBING, null, filters, counts)
        described = np.array([bool(told.get(int(p), (set(), set()))[0]) for p in found.tolist()])
        checked = _within(CHECKED_ITEMS, [got[i][got[i] >= 0] if described[i] else got[i][:0]
                                          for i in range(len(found))])
        items = {int(r) for i in np.nonzero(checked & described)[0] for r in got[i][got[i] >= 0]} - told.keys()
        told.update(self._groups(sorted(items), DESCRIBING, null, filters, counts))
        out = labels.copy()
        for i in np.nonzero(checked & described)[0]:
            mine = told[int(found[i])][0]
            out[i] = [r >= 0 and bool(mine & told.get(int(r), (set(), set()))[0]) for r in got[i].tolist()]
        return out, checked

    def _file_ids(self, ids: np.ndarray) -> np.ndarray:
        """The file of each item id (-1 for a missing id or one no longer in the catalog)."""
        files = self.store.catalog.files_of_items(np.unique(ids[ids >= 0]).tolist())
        known = np.fromiter(files, np.int64, len(files))
        if not known.size:
            return np.full(ids.shape, -1, np.int64)
        order = np.argsort(known)
        known, of = known[order], np.fromiter(files.values(), np.int64, len(files))[order]
        at = np.minimum(np.searchsorted(known, ids), known.size - 1)
        return np.where(known[at] == ids, of[at], -1)

    def store_profile_if_stale(self) -> bool:
        """Writer side, after a commit: recompute and save the profile when the collection moved enough."""
        counts = self._counts()
        raw = self.store.catalog.get_meta(PROFILE_KEY)
        stored = Profile.from_json(raw) if raw else None
        if stored is not None and not stored.stale(counts):
            return False
        profile = self.compute(counts)
        with self.store.catalog.transaction():
            self.store.catalog.set_meta(PROFILE_KEY, profile.to_json())
        self._key = None
        return True

    def save_calibration(self, cal: Calibration) -> None:
        with self.store.catalog.transaction():
            self.store.catalog.set_meta(CALIBRATION_KEY, cal.to_json())
        self._key = None

    def _present_vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of those ids still stored (a sample may name a few items removed since)."""
        found, out = [], []
        for i in ids.tolist():
            try:
                out.append(self.store.vectors.reconstruct(np.array([i], np.int64))[0])
                found.append(i)
            except (RuntimeError, MMRError):  # faiss: no such id; exact rows (a compressed index): none for it
                continue
        return np.asarray(found, np.int64), np.asarray(out, np.float32).reshape(-1, self.store.vectors.dim)

    # --- scoring
    def relevance(self, query: np.ndarray, query_modality: str | None, modalities: list[str],
                  scores: np.ndarray) -> np.ndarray:
        """Relevance in [0, 1] of hits with these modalities and cosines for this query."""
        self.refresh()
        out = np.full(len(scores), np.nan)
        kinds = np.asarray(modalities)
        for m in dict.fromkeys(modalities):
            rows = np.flatnonzero(kinds == m)
            sample = self.null.get(m)
            if sample is None or sample.shape[0] < MIN_ITEMS:
                continue
            mean, std = null_stats(query, sample)
            z = z_scores(scores[rows], mean, std)
            out[rows] = self.of_z(query_modality, m, z, scores[rows],
                                  standing_top(z, scores[rows], self.profile.counts.get(m, 0)))
        return out

    def of_z(self, query_modality: str | None, modality: str, z: np.ndarray, scores: np.ndarray,
             top: int | None = None) -> np.ndarray:
        """Relevance of hits of one pair of modalities from their z-scores (and cosines, for a calibration):
        the calibration's where one was fitted for the pair, else the pair's self-labelled curve. `top`: the hit
        heading a group that stands apart in the query's ranking, at least as relevant as the matches that
        headed their probe's group (measured side by side in docs/relevance.md)."""
        cal = self.calibration.pairs.get(pair_key(query_modality, modality)) if self.calibration is not None else None
        if cal is not None:
            return cal(z, scores)
        out = self.profile.curve(query_modality, modality)(z)
        heading = self.profile.heads_curve(query_modality, modality)
        if top is not None and heading is not None:
            out[top] = max(float(out[top]), float(heading(z[top:top + 1])[0]))
        return out

    def calibrated(self, query_modality: str | None, modality: str) -> bool:
        self.refresh()
        return self.calibration is not None and pair_key(query_modality, modality) in self.calibration.pairs

    def describe(self) -> dict[str, Any]:
        from .profile import to_dict

        self.refresh()
        return {"profile": to_dict(self.profile),
                "calibration": None if self.calibration is None else self.calibration.to_dict()}


def _within(budget: int, per_row: list[np.ndarray]) -> np.ndarray:
    """The first rows whose items, counted once, fit `budget`. The probes are drawn at random, so the first ones
    are a fair sample of them; keeping later rows that need nothing (probes without a group) would not be."""
    seen: set[int] = set()
    out = np.zeros(len(per_row), bool)
    for i, items in enumerate(per_row):
        new = {int(x) for x in items} - seen
        if len(seen) + len(new) > budget:
            break
        seen |= new
        out[i] = True
    return out
