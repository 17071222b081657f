"""The label-free basis of relevance.

For a query q and a hit of modality m with cosine s, the hit's **z-score** places s against the null, the
scores a random item of m gets for q: z = (s - mean) / std over a fixed sample of m's stored vectors (up to
`NULL_SAMPLE`). z makes queries comparable (a query whose every score is high does not look relevant
everywhere), but pairs of modalities still differ: a best match is z ~3 for text->image and ~2.5 for
text->audio with the shipped `tiny` space. So each pair also gets a **profile** from the index's own items:
items of the query's modality are used as queries (up to `PROBES`), and the median and spread of their best
match's z describe what "as good as a typical best match" means for that pair. Uncalibrated relevance is
Phi((z - median) / spread): 0.5 for a typical best match, near 1 for a clearly better one, near 0 for the
crowd. Everything here is computed from vectors already in the index; no labels.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..index.vector_index import matvec

NULL_SAMPLE = 1024
PROBES = 256
STALE_SHARE = 0.1   # recompute once a modality's item count moved by more than this share
# A pair with no probes (the index holds no items of the query's modality, e.g. text queries on a photo
# library): a best match's z taken as this, about the middle of the cross-modal pairs measured on the
# shipped `tiny` space's held-out index (medians 2.2-3.1, spreads 0.15-0.4).
DEFAULT_TOP1 = (2.9, 0.25)


@dataclass
class Profile:
    counts: dict[str, int]                                   # items per modality when computed
    null_ids: dict[str, list[int]]                           # the null sample of each modality
    top1: dict[str, tuple[float, float]] = field(default_factory=dict)  # "q->r": (median, spread) of best z

    def to_json(self) -> str:
        return json.dumps({"counts": self.counts, "null_ids": self.null_ids,
                           "top1": {k: list(v) for k, v in self.top1.items()}})

    @classmethod
    def from_json(cls, raw: str) -> Profile:
        d = json.loads(raw)
        return cls(d["counts"], d["null_ids"], {k: (float(v[0]), float(v[1])) for k, v in d["top1"].items()})

    def stale(self, counts: dict[str, int]) -> bool:
        if set(counts) != set(self.counts):
            return True
        return any(abs(counts[m] - self.counts[m]) > STALE_SHARE * max(self.counts[m], 1) for m in counts)

    def top1_of(self, query_modality: str | None, modality: str) -> tuple[float, float]:
        return self.top1.get(pair_key(query_modality, modality), DEFAULT_TOP1)


def pair_key(query_modality: str | None, modality: str) -> str:
    return f"{query_modality}->{modality}"


def null_stats(query: np.ndarray, sample: np.ndarray) -> tuple[float, float]:
    """Mean and std of the query's scores over a modality's null sample."""
    s = matvec(sample, query)[:, 0]
    return float(s.mean()), max(float(s.std()), 1e-6)


def z_scores(scores: np.ndarray, mean: float, std: float) -> np.ndarray:
    return (np.asarray(scores, np.float64) - mean) / std


def uncalibrated(z: np.ndarray | float, top1: tuple[float, float]) -> np.ndarray:
    med, spread = top1
    u = (np.asarray(z, np.float64).reshape(-1) - med) / (max(spread, 1e-6) * math.sqrt(2.0))
    return 0.5 * (1.0 + np.array([math.erf(x) for x in u.tolist()]))


def draw_null(ids_by_modality: dict[str, np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {m: np.sort(rng.choice(ids, min(NULL_SAMPLE, ids.size), replace=False)) if ids.size else ids
            for m, ids in ids_by_modality.items()}


def best_z(queries: np.ndarray, best: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """z of each probe query's best-match cosine against that query's null over `sample`."""
    null = queries @ sample.T
    mean, std = null.mean(axis=1), np.maximum(null.std(axis=1), 1e-6)
    return (best - mean) / std


def summarise(z: np.ndarray) -> tuple[float, float]:
    """Median and a robust spread (half the 16-84 percentile range) of best-match z-scores."""
    z = z[np.isfinite(z)]
    if z.size < 8:
        return DEFAULT_TOP1
    lo, med, hi = np.percentile(z, [16, 50, 84])
    return float(med), max(float(hi - lo) / 2, 0.05)


def to_dict(p: Profile) -> dict[str, Any]:
    return {"counts": p.counts, "null_sample": {m: len(v) for m, v in p.null_ids.items()},
            "best_match_z": {k: {"median": round(v[0], 3), "spread": round(v[1], 3)} for k, v in p.top1.items()}}
