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
    Profile,
    draw_null,
    fit_curve,
    null_stats,
    pair_key,
    probe_z,
    self_labels,
    z_scores,
)

PROFILE_KEY = "relevance_profile"
# Fewer items of a modality say nothing about what a random one scores: its hits get no relevance (None) and a
# search that returns them orders every hit by cosine. Fewer probe items of a query modality: the default curve.
MIN_ITEMS = 8
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
        curves = {}
        for qm, rm, _, probes, matches in self.probe(ids, null, PROBES, seed + 1):
            z = probe_z(probes, matches, null[rm])
            curve = fit_curve(z, self_labels(z, counts[rm]))
            if curve is not None:
                curves[pair_key(qm, rm)] = curve
        return Profile(counts, {m: v.tolist() for m, v in null_ids.items()}, curves)

    def probe(self, ids: dict[str, np.ndarray], null: dict[str, np.ndarray], probes: int, seed: int,
              depth: int = PROBE_DEPTH) -> Iterator[tuple[str, str, np.ndarray, np.ndarray, np.ndarray]]:
        """For each pair of modalities with enough items: up to `probes` stored items of the query modality (ids
        and vectors), and the cosines of each one's top `depth` matches among the other modality, best first; NaN
        where fewer exist. Matches from the probe's own file are skipped: a recording's other windows or a
        document's other passages stand apart from the crowd without being what a query looks for."""
        rng = np.random.default_rng(seed)
        filters = {m: IdFilter(v) for m, v in ids.items()}
        for qm, qids in ids.items():
            found, vecs = self._present_vectors(np.sort(rng.choice(qids, min(probes, qids.size), replace=False)))
            if vecs.shape[0] < MIN_ITEMS:
                continue
            for rm in ids:
                if null[rm].shape[0] < MIN_ITEMS:
                    continue
                scores, got = self.store.vectors.search(vecs, 2 * depth + 1, allowed=filters[rm])
                scores = np.where(got >= 0, scores, np.nan).astype(np.float64)
                own = self._file_ids(got) == self._file_ids(found)[:, None]
                order = np.argsort(own, axis=1, kind="stable")  # the others first, still best first
                scores = np.take_along_axis(np.where(own, np.nan, scores), order, axis=1)
                yield qm, rm, found, vecs, scores[:, :depth]

    def _file_ids(self, ids: np.ndarray) -> np.ndarray:
        """The file of each item id (-1 for a missing id or one no longer in the catalog)."""
        rows = self.store.catalog.items(np.unique(ids[ids >= 0]).tolist())
        return np.vectorize(lambda i: rows[i].file_id if i in rows else -1, otypes=[np.int64])(ids)

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
            out[rows] = self.of_z(query_modality, m, z_scores(scores[rows], mean, std), scores[rows])
        return out

    def of_z(self, query_modality: str | None, modality: str, z: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Relevance of hits of one pair of modalities from their z-scores (and cosines, for a calibration):
        the calibration's where one was fitted for the pair, else the pair's self-labelled curve."""
        cal = self.calibration.pairs.get(pair_key(query_modality, modality)) if self.calibration is not None else None
        return cal(z, scores) if cal is not None else self.profile.curve(query_modality, modality)(z)

    def calibrated(self, query_modality: str | None, modality: str) -> bool:
        self.refresh()
        return self.calibration is not None and pair_key(query_modality, modality) in self.calibration.pairs

    def describe(self) -> dict[str, Any]:
        from .profile import to_dict

        self.refresh()
        return {"profile": to_dict(self.profile),
                "calibration": None if self.calibration is None else self.calibration.to_dict()}
