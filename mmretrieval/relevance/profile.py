"""The label-free basis of relevance.

For a query q and a hit of modality m with cosine s, the hit's **z-score** places s against the null, the
scores a random item of m gets for q: z = (s - mean) / std over a fixed sample of m's stored vectors (up to
`NULL_SAMPLE`). z makes queries comparable (a query whose every score is high does not look relevant
everywhere), but where "relevant" begins on the z scale still differs by pair of modalities and collection.

So each pair of modalities gets a **relevance curve**, fitted from the index's own items without labels
(self-labelling): up to `PROBES` stored items of the query's modality search the other modality, and each
looks at its top `PROBE_DEPTH` matches for a group that stands apart, the matches above a drop at least
`GAP_FACTOR` times the typical drop between neighbours. Items of a group count as relevant to their probe,
everything else (and every match of a probe without such a group) as not. An isotonic regression of those
self-labels on z is the curve: relevance(z) estimates the probability that a hit at that z belongs to its
query's group, P(relevant | z). A second curve per pair is fitted from the same labels for the matches that
head their probe's group: at query time, the hit that heads a group standing apart in the query's own ranking
(`standing_top`) is at least that relevant. z alone cannot tell it: in a small collection a picture's right
caption can score a lower z than the runner-up caption of another picture, which stands apart from nothing.
`docs/relevance.md` has the candidates measured side by side (this one,
Efron's local false-discovery rate, mixture fits, the earlier best-match-median rule) and why this one.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from ..index.vector_index import matvec

NULL_SAMPLE = 1024
PROBES = 256
PROBE_DEPTH = 32      # matches per probe searched for a group that stands apart
GAP_FACTOR = 8.0      # a group's closing drop must be this many times the median drop among the top matches
KNOTS = 64            # a fitted curve is kept as this many (z, relevance) points, interpolated linearly
SMOOTH = 0.12         # the Gaussian (in z) that smooths the fitted step function
STALE_SHARE = 0.1     # recompute once a modality's item count moved by more than this share
VERSION = 4           # 1: best-match median and spread; 2: self-labels without the checks of version 3;
                      # 3: no curve for the matches that head a group
# A hit this close to the query is the query itself (an indexed file searched by) or a copy: relevant, and left out
# when the query's ranking is read for a group (it would stand apart alone).
IDENTICAL = 0.9999
TOP = "|top"          # the key suffix of a pair's curve for the matches that head a group
# A pair without probes (the index holds too few items of the query's modality, e.g. text queries on a photo
# library): relevance 0.5 at z = 2.5 rising over ~0.3, where the fitted curves of the shipped `tiny` space's
# held-out index cross 0.5 (z 2.2-2.6 across pairs).
DEFAULT_MIDPOINT, DEFAULT_WIDTH = 2.5, 0.2


@dataclass
class Curve:
    z: list[float]
    relevance: list[float]
    probes: int = 0             # probe items it was fitted from; 0: the default
    grouped: float = 0.0        # share of the probes' top matches self-labelled relevant

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(z, np.float64), self.z, self.relevance)

    def crossing(self, level: float) -> float | None:
        """The lowest z whose relevance reaches `level` (None: never)."""
        r = np.asarray(self.relevance)
        i = int(np.argmax(r >= level))
        return None if r[i] < level else float(self.z[i])


@lru_cache(maxsize=1)
def default_curve() -> Curve:  # on the query path of every pair without probes: built once
    z = np.linspace(DEFAULT_MIDPOINT - 4 * DEFAULT_WIDTH, DEFAULT_MIDPOINT + 4 * DEFAULT_WIDTH, 17)
    u = (z - DEFAULT_MIDPOINT) / (DEFAULT_WIDTH * math.sqrt(2))
    r = 0.5 * (1.0 + np.array([math.erf(x) for x in u.tolist()]))
    return Curve(z.tolist(), r.tolist())


@dataclass
class Profile:
    counts: dict[str, int]                                   # items per modality when computed
    null_ids: dict[str, list[int]]                           # the null sample of each modality
    # "q->r": the pair's relevance curve; "q->r|top": the curve of the matches that head their probe's group
    curves: dict[str, Curve] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"version": VERSION, "counts": self.counts, "null_ids": self.null_ids,
                           "curves": {k: vars(c) for k, c in self.curves.items()}})

    @classmethod
    def from_json(cls, raw: str) -> Profile | None:
        """The stored profile, or None when it is of another version (then it is recomputed)."""
        d = json.loads(raw)
        if d.get("version") != VERSION:
            return None
        return cls(d["counts"], d["null_ids"], {k: Curve(**c) for k, c in d["curves"].items()})

    def stale(self, counts: dict[str, int]) -> bool:
        if set(counts) != set(self.counts):
            return True
        return any(abs(counts[m] - self.counts[m]) > STALE_SHARE * max(self.counts[m], 1) for m in counts)

    def curve(self, query_modality: str | None, modality: str) -> Curve:
        """The pair's curve (the default where none was fitted)."""
        return self.curves.get(pair_key(query_modality, modality)) or default_curve()

    def heads_curve(self, query_modality: str | None, modality: str) -> Curve | None:
        """The pair's curve of the matches heading a group that stands apart (None where none was fitted)."""
        return self.curves.get(f"{pair_key(query_modality, modality)}{TOP}")


def pair_key(query_modality: str | None, modality: str) -> str:
    return f"{query_modality}->{modality}"


def null_stats(query: np.ndarray, sample: np.ndarray) -> tuple[float, float]:
    """Mean and std of the query's scores over a modality's null sample."""
    s = matvec(sample, query)[:, 0]
    return float(s.mean()), max(float(s.std()), 1e-6)


def z_scores(scores: np.ndarray, mean: float, std: float) -> np.ndarray:
    return (np.asarray(scores, np.float64) - mean) / std


def draw_null(ids_by_modality: dict[str, np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {m: np.sort(rng.choice(ids, min(NULL_SAMPLE, ids.size), replace=False)) if ids.size else ids
            for m, ids in ids_by_modality.items()}


def probe_z(queries: np.ndarray, scores: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """z of each probe's match cosines (rows of `scores`, best first) against that probe's null over `sample`."""
    null = queries @ sample.T
    mean, std = null.mean(axis=1), np.maximum(null.std(axis=1), 1e-6)
    return (scores - mean[:, None]) / std[:, None]


def self_labels(z: np.ndarray, items: int) -> np.ndarray:
    """Per probe (a row of z, best first): True for the matches above the drop that closes a group standing
    apart, all False when no drop stands out. Rows may end in NaN (fewer matches than the depth). A group holds
    at most a quarter of the `items` of its modality: one that holds most of them is the collection, not a match."""
    most = max(1, items // 4)
    labels = np.zeros(z.shape, bool)
    for i, row in enumerate(z):
        row = row[np.isfinite(row)]
        if row.size < 3:
            continue
        drops = row[:-1] - row[1:]
        j = int(np.argmax(drops[:most]))
        if drops[j] > 0 and drops[j] >= GAP_FACTOR * float(np.median(drops)):
            labels[i, :j + 1] = True
    return labels


def standing_top(z: np.ndarray, scores: np.ndarray, items: int) -> int | None:
    """Of a query's hits in one modality (z and cosines, any order: its top matches there), the one that heads a
    group standing apart in its ranking, read as `self_labels` reads a probe's; None when no group stands out."""
    same = scores >= IDENTICAL
    order = np.argsort(-np.where(same, -np.inf, z), kind="stable")[:PROBE_DEPTH]
    order = order[~same[order]]
    if not self_labels(z[order][None, :], items)[0].any():
        return None
    return int(order[0])


def isotonic(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators: the non-decreasing step function of x closest to y (x sorted, fitted y)."""
    o = np.argsort(x, kind="stable")
    x, y = np.asarray(x, np.float64)[o], np.asarray(y, np.float64)[o]
    means: list[float] = []   # the blocks: their means and sizes
    sizes: list[int] = []
    for v in y.tolist():
        means.append(v)
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            n = sizes[-2] + sizes[-1]
            means[-2] = (means[-2] * sizes[-2] + means[-1] * sizes[-1]) / n
            sizes[-2] = n
            del means[-1], sizes[-1]
    return x, np.repeat(means, sizes)


def fit_curve(z: np.ndarray, labels: np.ndarray) -> Curve | None:
    """The relevance curve of one pair from its probes' match z-scores and self-labels (None: too few)."""
    keep = np.isfinite(z)
    x, y = z[keep], labels[keep]
    if x.size < 16:
        return None
    xs, fitted = isotonic(x, y)
    # The isotonic fit is a step function; smoothed with a Gaussian (monotone still) so that a hit just below
    # a step is not scored as far from one just above it, which matters most on small collections.
    fine = np.arange(xs[0] - 3 * SMOOTH, xs[-1] + 3 * SMOOTH, SMOOTH / 8)
    step = fitted[np.clip(np.searchsorted(xs, fine, side="right") - 1, 0, xs.size - 1)]
    step[fine > xs[-1]] = fitted[-1]
    kernel = np.exp(-0.5 * (np.arange(-24, 25) / 8) ** 2)
    smooth = np.convolve(np.pad(step, 24, mode="edge"), kernel / kernel.sum(), "valid")
    knots = np.linspace(fine[0], fine[-1], KNOTS)
    r = np.interp(knots, fine, smooth)
    probes = int(np.isfinite(z).any(axis=1).sum()) if z.ndim == 2 else int(z.shape[0])
    return Curve([round(float(v), 4) for v in knots], [round(float(v), 4) for v in r], probes=probes,
                 grouped=round(float(y.mean()), 4))


def to_dict(p: Profile) -> dict[str, Any]:
    return {"counts": p.counts, "null_sample": {m: len(v) for m, v in p.null_ids.items()},
            "curves": {k: {"probes": c.probes, "self_labelled_share": c.grouped,
                           "z_at_0.5": _r(c.crossing(0.5)), "z_at_0.9": _r(c.crossing(0.9))}
                       for k, c in p.curves.items()},
            "default_curve": {"z_at_0.5": DEFAULT_MIDPOINT}}


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)
