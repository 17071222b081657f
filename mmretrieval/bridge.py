"""A learned bridge between two spaces: a map fitted on items embedded in both, which carries the other items' old
vectors into the new space until they are embedded there (issue #33; Drift-Adapter, EMNLP 2025, fits the same
kinds on paired old/new vectors).

Kinds (`KINDS`), fitted on unit vectors ``old [n, d_old]`` and ``new [n, d_new]`` of the same items:
- ``procrustes``: the (semi-)orthogonal W minimising ||old W - new|| (an SVD of ``old^T new``). It keeps angles, so
  it cannot overfit a small sample, and a query can be carried back instead of the collection (``q W^T``).
- ``ridge``: least squares with a ridge penalty chosen on a held-out fifth of the pairs.
- ``residual``: ridge plus a small MLP on its residual (one hidden layer), trained on cosine loss in numpy.
`apply` returns unit rows: cosines in the new space. `held_out` measures a kind on pairs left out of its fit,
beside the old space (what a migration checks before it switches through a bridge). `scripts/bench/bridge.py`
measures each kind's recall@10 against a full re-embedding by sample size.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .encoders.arrays import unit_rows
from .errors import UsageError

KINDS = ("procrustes", "ridge", "residual")
RIDGE_ALPHAS = (1e-3, 1e-2, 1e-1, 1.0)  # the penalty as a share of the mean eigenvalue of old^T old


@dataclass
class Bridge:
    kind: str
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    def apply(self, old: np.ndarray) -> np.ndarray:
        """Old-space vectors ``[n, d_old]`` -> unit vectors ``[n, d_new]`` in the new space."""
        x = np.asarray(old, dtype=np.float32)
        y = x @ self.weights["W"]
        if self.kind == "residual":
            h = np.maximum(x @ self.weights["A"] + self.weights["a"], 0.0)
            y = y + h @ self.weights["B"]
        return unit_rows(y)

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "wb") as f:
            np.savez(f, kind=np.array(self.kind), **self.weights)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Bridge":
        with np.load(path, allow_pickle=False) as z:
            return cls(str(z["kind"]), {k: z[k] for k in z.files if k != "kind"})


def fit(kind: str, old: np.ndarray, new: np.ndarray, *, seed: int = 0) -> Bridge:
    """The bridge of `kind` from `old` to `new` (rows: the same items in both spaces)."""
    if kind not in KINDS:
        raise UsageError(f"unknown bridge kind {kind!r}; valid: {', '.join(KINDS)}")
    x, y = np.asarray(old, np.float64), np.asarray(new, np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) < 2:
        raise UsageError(f"a bridge needs the same items (>= 2) in both spaces, got {x.shape} and {y.shape}")
    if kind == "procrustes":
        return Bridge(kind, {"W": _procrustes(x, y).astype(np.float32)})
    w = _ridge(x, y, _choose_alpha(x, y, seed))
    if kind == "ridge":
        return Bridge(kind, {"W": w.astype(np.float32)})
    return _residual(x, y, w, seed)


def _procrustes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(x.T @ y, full_matrices=False)
    return u @ vt


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    gram = x.T @ x
    lam = alpha * np.trace(gram) / gram.shape[0]
    return np.linalg.solve(gram + lam * np.eye(gram.shape[0]), x.T @ y)


def _cosines(pred: np.ndarray, y: np.ndarray) -> float:
    p = pred / np.maximum(np.linalg.norm(pred, axis=1, keepdims=True), 1e-12)
    return float(np.einsum("ij,ij->i", p, y).mean())


def _choose_alpha(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    """The ridge penalty whose fit on four fifths of the pairs gives the best mean cosine on the fifth left."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    cut = max(1, len(x) // 5)
    test, train = order[:cut], order[cut:]
    if len(train) < 2:
        return RIDGE_ALPHAS[-1]
    return max(RIDGE_ALPHAS, key=lambda a: _cosines(x[test] @ _ridge(x[train], y[train], a), y[test]))


def _residual(x: np.ndarray, y: np.ndarray, w: np.ndarray, seed: int, hidden: int = 256, steps: int = 300,
              lr: float = 3e-3, decay: float = 1e-4) -> Bridge:
    """Ridge plus ``relu(x A + a) B`` fitted by Adam on 1 - cosine; B starts at zero (the ridge map itself)."""
    rng = np.random.default_rng(seed)
    d_in, d_out = x.shape[1], y.shape[1]
    params = {"A": rng.standard_normal((d_in, hidden)) / np.sqrt(d_in), "a": np.zeros(hidden),
              "B": np.zeros((hidden, d_out))}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    base = x @ w
    for t in range(1, steps + 1):
        pre = x @ params["A"] + params["a"]
        h = np.maximum(pre, 0.0)
        out = base + h @ params["B"]
        norm = np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        p = out / norm
        c = np.einsum("ij,ij->i", p, y)[:, None]
        g_out = -(y - c * p) / norm / len(x)                  # d(mean(1 - cos))/d out
        g_h = g_out @ params["B"].T * (pre > 0)
        grads = {"B": h.T @ g_out + decay * params["B"], "A": x.T @ g_h + decay * params["A"], "a": g_h.sum(0)}
        for k in params:
            m[k] = 0.9 * m[k] + 0.1 * grads[k]
            v[k] = 0.999 * v[k] + 0.001 * grads[k] ** 2
            params[k] -= lr * (m[k] / (1 - 0.9 ** t)) / (np.sqrt(v[k] / (1 - 0.999 ** t)) + 1e-8)
    return Bridge("residual", {"W": w.astype(np.float32), **{k: p.astype(np.float32) for k, p in params.items()}})


@dataclass(frozen=True)
class HeldOut:
    """How a bridge searches on pairs it was not fitted on, beside the old space: recall@k of each item's
    neighbours in the new space (its real vector as the query) among the others' bridged vectors, and of its old
    neighbours among the others' old vectors, both against its neighbours among the others' real new vectors."""

    bridged: float
    old: float
    pairs: int

    @property
    def holds_up(self) -> bool:
        """Does searching through the bridge find at least what staying in the old space finds (within a point
        of recall: a near-exact map ties with the old space up to rounding)?"""
        return self.bridged >= self.old - 0.01


def held_out(kind: str, old: np.ndarray, new: np.ndarray, *, k: int = 10, seed: int = 0) -> HeldOut:
    """Fit on four fifths of the pairs and measure on the fifth left (`HeldOut`). Every other item counts as
    bridged, the state just after a switch: the worst a migration through this bridge searches."""
    x, y = np.asarray(old, np.float32), np.asarray(new, np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = max(1, len(x) // 5)
    test, train = order[:cut], order[cut:]
    b = fit(kind, x[train], y[train], seed=seed)
    carried = b.apply(x)
    k = min(k, len(x) - 1)

    def neighbours(q: np.ndarray, base: np.ndarray) -> np.ndarray:
        s = q @ base.T
        s[np.arange(len(test)), test] = -np.inf  # an item is not its own neighbour
        return np.argsort(-s, axis=1)[:, :k]

    ref = neighbours(y[test], y)

    def recall(got: np.ndarray) -> float:
        return float(np.mean([len(set(g) & set(r)) / k for g, r in zip(got.tolist(), ref.tolist())]))

    return HeldOut(recall(neighbours(y[test], carried)), recall(neighbours(x[test], x)), int(len(test)))
