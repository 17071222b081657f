"""Relevance for the hits of one index: the profile and null sample (cached per committed state), and the
calibration if one was fitted in the index's space."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..index.vector_index import IdFilter
from ..store import Store
from .calibration import Calibration
from .profile import (
    PROBES,
    Profile,
    best_z,
    draw_null,
    null_stats,
    pair_key,
    summarise,
    uncalibrated,
    z_scores,
)

PROFILE_KEY = "relevance_profile"
MIN_ITEMS = 8  # fewer items of a modality say nothing about what a random one scores: no relevance
CALIBRATION_KEY = "relevance_calibration"


class RelevanceScorer:
    def __init__(self, store: Store, fingerprint: str) -> None:
        self.store = store
        self.fingerprint = fingerprint
        self._key: Any = None
        self._lock = threading.Lock()
        self.profile: Profile | None = None
        self.null: dict[str, np.ndarray] = {}
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
            self.null = {m: self._present_vectors(np.asarray(ids, np.int64))[1] for m, ids in profile.null_ids.items()}
            raw = self.store.catalog.get_meta(CALIBRATION_KEY)
            cal = Calibration.from_json(raw) if raw else None
            self.calibration = cal if cal is not None and cal.fingerprint == self.fingerprint else None
            self._key = key

    def compute(self, counts: dict[str, int] | None = None, seed: int = 0) -> Profile:
        """Null samples and best-match profiles from the index's own items (no labels)."""
        counts = counts if counts is not None else self._counts()
        ids = {m: self.store.catalog.item_ids([m]) for m in counts}
        null_ids = draw_null(ids, seed)
        null = {m: self._present_vectors(v)[1] for m, v in null_ids.items()}
        top1 = {pair_key(qm, rm): summarise(best_z(probes, best, null[rm]))
                for qm, rm, probes, best in self.probe(ids, null, PROBES, seed + 1)}
        return Profile(counts, {m: v.tolist() for m, v in null_ids.items()}, top1)

    def probe(self, ids: dict[str, np.ndarray], null: dict[str, np.ndarray], probes: int,
              seed: int) -> Iterator[tuple[str, str, np.ndarray, np.ndarray]]:
        """For each pair of modalities with enough items: up to `probes` stored items of the query modality, and
        the cosine of each one's best match among the other modality (an item's own vector skipped)."""
        rng = np.random.default_rng(seed)
        filters = {m: IdFilter(v) for m, v in ids.items()}
        for qm, qids in ids.items():
            found, vecs = self._present_vectors(np.sort(rng.choice(qids, min(probes, qids.size), replace=False)))
            if vecs.shape[0] < MIN_ITEMS:
                continue
            for rm in ids:
                if null[rm].shape[0] < MIN_ITEMS:
                    continue
                scores, got = self.store.vectors.search(vecs, 2, allowed=filters[rm])
                best = np.where(got[:, 0] == found, scores[:, 1], scores[:, 0]) if qm == rm else scores[:, 0]
                yield qm, rm, vecs, best.astype(np.float64)

    def store_profile_if_stale(self) -> bool:
        """Writer side, after a commit: recompute and save the profile when the collection moved enough."""
        counts = self._counts()
        raw = self.store.catalog.get_meta(PROFILE_KEY)
        if raw is not None and not Profile.from_json(raw).stale(counts):
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
            except RuntimeError:
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
            key = pair_key(query_modality, m)
            cal = self.calibration.pairs.get(key) if self.calibration is not None else None
            out[rows] = cal(z, scores[rows]) if cal is not None else uncalibrated(z, self.profile.top1_of(query_modality, m))
        return out

    def describe(self) -> dict[str, Any]:
        from .profile import to_dict

        self.refresh()
        return {"profile": to_dict(self.profile),
                "calibration": None if self.calibration is None else self.calibration.to_dict()}
