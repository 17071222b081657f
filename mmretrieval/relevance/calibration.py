"""Calibrated relevance: per pair of modalities, P(relevant | z) fitted on labelled pairs (`mmr calibrate`).

A logistic regression on the hit's null z-score and its cosine, fitted on the top-k hits of every query in
the pairs (the region where a cutoff is decided). z alone ranks hits within a query but cannot tell a
query that has nothing relevant in a modality ("a red square" asking for sounds finds square-wave buzzes
at a high z); the cosine adds how close the hit is in absolute terms (text->audio, tiny space, held out:
precision at P >= 0.9 went from 0.88 with z alone to 0.996). It is stored in the index with the space fingerprint it was fitted in;
an index in another space ignores it. Pairs of modalities without enough positives and negatives keep the
uncalibrated relevance.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MIN_EACH = 10   # at least this many relevant and irrelevant hits to fit a pair


FEATURES = ("bias", "z", "cosine")


@dataclass
class Logistic:
    weights: list[float]   # over FEATURES
    n: int
    positives: int

    def __call__(self, z: np.ndarray, cosine: np.ndarray) -> np.ndarray:
        t = _design(z, cosine) @ np.asarray(self.weights)
        return 1.0 / (1.0 + np.exp(-np.clip(t, -50, 50)))


def _design(z: np.ndarray, cosine: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64).reshape(-1)
    return np.c_[np.ones(z.size), z, np.asarray(cosine, np.float64).reshape(-1)]


def fit_logistic(z: np.ndarray, cosine: np.ndarray, relevant: np.ndarray, l2: float = 1e-3,
                 iters: int = 100) -> Logistic:
    """Newton's method on the log-likelihood (a small ridge keeps separable data finite)."""
    x = _design(z, cosine)
    y = np.asarray(relevant, np.float64)
    w = np.zeros(x.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -50, 50)))
        g = x.T @ (p - y) + l2 * w
        h = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(x.shape[1])
        step = np.linalg.solve(h, g)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return Logistic([float(v) for v in w], int(y.size), int(y.sum()))


@dataclass
class Calibration:
    fingerprint: str
    pairs: dict[str, Logistic] = field(default_factory=dict)
    source: str = ""

    def to_json(self) -> str:
        return json.dumps({"fingerprint": self.fingerprint, "source": self.source,
                           "pairs": {k: vars(v) for k, v in self.pairs.items()}})

    @classmethod
    def from_json(cls, raw: str) -> Calibration:
        d = json.loads(raw)
        return cls(d["fingerprint"], {k: Logistic(**v) for k, v in d["pairs"].items()}, d.get("source", ""))

    def to_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "source": self.source,
                "pairs": {k: {"weights": dict(zip(FEATURES, (round(w, 4) for w in v.weights))), "hits": v.n,
                              "relevant": v.positives} for k, v in self.pairs.items()}}
