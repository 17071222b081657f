"""Label-free relevance estimators side by side (issue #30): which one makes "relevance >= 0.5" mean "likely
relevant" for every pair of modalities, measured on held-out splits of the shipped `tiny` space's corpus.

Each split is indexed like a user's folder (images, sounds, each caption a text file). Every item (every
caption for text) asks for its top 10 of each modality, as `mmr search` does: z against the modality's null
sample of up to 1,024 stored vectors. Each estimator sees only what the index holds (probe items and their
scores, never the labels) and maps z to a relevance; the labels then say, per pair, the precision and recall
(share of the relevant top-10 hits) at relevance >= 0.5, against the ceiling: the best recall one per-pair
threshold on z or cosine reaches at precision >= 0.8. Target: precision >= 0.75 and recall >= 0.8 x ceiling.

Estimators:
- `median-best` (the earlier rule): Phi((z - median) / spread) of the probes' best-match z.
- `efron-lfdr`: Efron's local false-discovery rate, 1 - pi0 f0(z) / f(z); f from the probes' z over the
  null sample (Poisson regression on a histogram, degree-7 polynomial), f0 by central matching.
- `gmm3`: a 3-component Gaussian mixture of the probes' top-10 z, relevance = posterior of the top component.
- `two-group`: pi1 f1 / f with f1 the density of the probes' best-match z, pi1 the largest that fits under f.
- `self-labelled` (shipped, `relevance/profile.py`): isotonic P(in a group that stands apart | z).

Run: `python scripts/bench/relevance_candidates.py` (~1 min on 2 cores).
"""
from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

import mmretrieval as mmr
from mmretrieval.relevance import profile as P
from mmretrieval.relevance.evaluate import best_recall, item_key, labels_of, write_captions
from mmretrieval.train.corpus import generate
from mmretrieval.train.pairs import read_pairs

SPLITS = {"seed 2000, 6 per class": (2000, 6), "seed 3000, 4 per class": (3000, 4)}
PAIRS = [("text", "image"), ("image", "text"), ("text", "audio"), ("audio", "text"), ("image", "image"),
         ("audio", "audio"), ("text", "text")]


def indexed(tmp: Path, seed: int, per_class: int):
    """(vectors, modalities, label sets) of a held-out split indexed through the engine."""
    generate(tmp / "d", seed=seed, images_per_class=per_class, sounds_per_class=per_class)
    pairs = read_pairs(tmp / "d" / "pairs.jsonl")
    write_captions(pairs, tmp / "d" / "captions")
    label_of = labels_of(pairs)
    with mmr.Engine(tmp / "idx", model="tiny") as eng:
        eng.index([tmp / "d" / x for x in ("images", "sounds", "captions")])
        ids = eng.store.catalog.item_ids()
        rows = eng.store.catalog.items(ids.tolist())
        vecs = eng.store.vectors.reconstruct(np.asarray(ids, np.int64)).astype(np.float64)
    mods = np.array([rows[i].modality for i in ids.tolist()])
    labels = [label_of.get(item_key(rows[i].modality, rows[i].path, rows[i].text), set()) for i in ids.tolist()]
    return vecs, mods, labels


class Split:
    def __init__(self, vecs: np.ndarray, mods: np.ndarray, labels: list[set[str]]) -> None:
        self.v, self.labels = vecs, labels
        rng = np.random.default_rng(0)
        self.idx = {m: np.flatnonzero(mods == m) for m in ("image", "audio", "text")}
        self.null = {m: np.sort(rng.choice(i, min(P.NULL_SAMPLE, i.size), replace=False)) for m, i in self.idx.items()}

    def z(self, queries: np.ndarray, qm: str, rm: str):
        """Cosines and z of every rm item for each query (an item's own entry NaN), best first."""
        s = self.v[queries] @ self.v[self.idx[rm]].T
        n = self.v[queries] @ self.v[self.null[rm]].T
        z = (s - n.mean(1, keepdims=True)) / np.maximum(n.std(1, keepdims=True), 1e-6)
        if qm == rm:
            z[queries[:, None] == self.idx[rm][None, :]] = np.nan
        order = np.argsort(-np.nan_to_num(z, nan=-np.inf), 1)
        return np.take_along_axis(s, order, 1), np.take_along_axis(z, order, 1), order, n

    def hits(self, qm: str, rm: str, k: int = 10):
        q = self.idx[qm]
        s, z, order, _ = self.z(q, qm, rm)
        ok = np.array([[bool(self.labels[a] & self.labels[self.idx[rm][j]]) for j in row[:k]]
                       for a, row in zip(q, order)])
        return z[:, :k].ravel(), s[:, :k].ravel(), ok.ravel()

    def probes(self, qm: str, rm: str):
        q = np.sort(np.random.default_rng(1).choice(self.idx[qm], min(P.PROBES, self.idx[qm].size), replace=False))
        s, z, _, n = self.z(q, qm, rm)
        null_z = (n - n.mean(1, keepdims=True)) / np.maximum(n.std(1, keepdims=True), 1e-6)
        if qm == rm:
            null_z[q[:, None] == self.null[rm][None, :]] = np.nan
        return z, null_z[np.isfinite(null_z)], self.idx[rm].size


def _phi(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def median_best(z, pool, items):
    b = z[:, 0][np.isfinite(z[:, 0])]
    lo, med, hi = np.percentile(b, [16, 50, 84])
    return lambda x: _phi((x - med) / max((hi - lo) / 2, 0.05))


def efron_lfdr(z, pool, items):
    h, e = np.histogram(pool, bins=np.linspace(pool.min(), pool.max(), 90))
    x = (e[:-1] + e[1:]) / 2
    X = np.vander((x - x.mean()) / x.std(), 8, increasing=True)
    b = np.zeros(8)
    b[0] = np.log(h.mean() + 1)
    for _ in range(50):  # Poisson regression by IRLS
        eta = X @ b
        mu = np.exp(eta)
        working = eta + (h - mu) / np.maximum(mu, 1e-9)
        b = np.linalg.solve(X.T @ (mu[:, None] * X) + 1e-6 * np.eye(8), X.T @ (mu * working))
    lf = X @ b
    c = np.abs(x - x[np.argmax(lf)]) < 1.0
    a2, a1, a0 = np.polyfit(x[c], lf[c], 2)
    rel = np.maximum.accumulate(np.clip(1 - np.exp(a0 + a1 * x + a2 * x * x - lf), 0, 1))
    return lambda v: np.interp(v, x, rel, left=0, right=1)


def gmm3(z, pool, items, k=3, iters=200):
    x = z[:, :10][np.isfinite(z[:, :10])]
    mu, sd, w = np.percentile(x, np.linspace(10, 97, k)), np.full(k, x.std() / k), np.full(k, 1 / k)
    for _ in range(iters):
        p = w * np.exp(-0.5 * ((x[:, None] - mu) / sd) ** 2) / sd
        p /= p.sum(1, keepdims=True) + 1e-300
        n = p.sum(0) + 1e-12
        w, mu = n / n.sum(), (p * x[:, None]).sum(0) / n
        sd = np.sqrt((p * (x[:, None] - mu) ** 2).sum(0) / n) + 1e-3
    top = int(np.argmax(mu))
    grid = np.linspace(-4, 6, 401)
    p = w * np.exp(-0.5 * ((grid[:, None] - mu) / sd) ** 2) / sd
    rel = np.maximum.accumulate(p[:, top] / p.sum(1).clip(1e-300))
    return lambda v: np.interp(v, grid, rel)


def _density(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    bw = 1.06 * x.std() * x.size ** -0.2
    d = np.exp(-0.5 * ((grid[:, None] - x[None, :]) / bw) ** 2).sum(1) if x.size < 5000 else \
        np.interp(grid, *_hist_density(x, bw))
    return d / (np.trapezoid(d, grid) or 1)


def _hist_density(x, bw):
    h, e = np.histogram(x, bins=400)
    c = (e[:-1] + e[1:]) / 2
    k = np.exp(-0.5 * ((c[:, None] - c[None, :]) / bw) ** 2)
    return c, k @ h


def two_group(z, pool, items):
    grid = np.linspace(-6, 8, 701)
    best = z[:, 0][np.isfinite(z[:, 0])]
    f, f1 = _density(pool, grid), _density(best, grid)
    lo, hi = np.percentile(best, [5, 95])
    m = (grid >= lo) & (grid <= hi) & (f1 > 0)
    rel = np.clip(np.min(f[m] / f1[m]) * f1 / np.maximum(f, 1e-12), 0, 1)
    rel[grid > hi] = 1
    rel = np.maximum.accumulate(np.where(grid < np.percentile(best, 1), 0, rel))
    return lambda v: np.interp(v, grid, rel)


def self_labelled(z, pool, items):
    top = z[:, :P.PROBE_DEPTH]
    return P.fit_curve(top, P.self_labels(top, items))


ESTIMATORS = {"median-best": median_best, "efron-lfdr": efron_lfdr, "gmm3": gmm3, "two-group": two_group,
              "self-labelled": self_labelled}


def main() -> None:
    out: dict = {}
    for split, (seed, per_class) in SPLITS.items():
        with tempfile.TemporaryDirectory() as tmp:
            data = Split(*indexed(Path(tmp), seed, per_class))
        print(f"{split}: precision / recall at relevance >= 0.5 (ceiling); * meets the target")
        print(f"  {'pair':<14}{'ceiling':>8}  " + "".join(f"{n:>16}" for n in ESTIMATORS))
        met = dict.fromkeys(ESTIMATORS, 0)
        for qm, rm in PAIRS:
            z, s, ok = data.hits(qm, rm)
            ceiling = max(best_recall(z, ok), best_recall(s, ok))
            cells = []
            for name, fit in ESTIMATORS.items():
                keep = fit(*data.probes(qm, rm))(z) >= 0.5
                prec = float(ok[keep].mean()) if keep.any() else 0.0
                rec = float((ok & keep).sum() / max(ok.sum(), 1))
                good = prec >= 0.75 and rec >= 0.8 * ceiling
                met[name] += good
                cells.append(f"{prec:.2f}/{rec:.2f}{'*' if good else ' '}")
                out.setdefault(split, {}).setdefault(name, {})[f"{qm}->{rm}"] = [round(prec, 3), round(rec, 3)]
            out[split].setdefault("ceiling", {})[f"{qm}->{rm}"] = round(ceiling, 3)
            print(f"  {qm + '->' + rm:<14}{ceiling:>8.2f}  " + "".join(f"{c:>16}" for c in cells))
        print("  pairs meeting the target: " + ", ".join(f"{k} {v}/{len(PAIRS)}" for k, v in met.items()))
    print(json.dumps({"bench": "relevance_candidates", **out}))


if __name__ == "__main__":
    sys.exit(main())
