"""Clusters of the collection in the shared space, named zero-shot, and its outliers.

k-means (faiss, spherical) over any mix of modalities. One shared space puts a photo of a dog, the word "dog" and
a bark near each other in direction, but each modality sits in a cone of its own (the modality gap: text-image
cosines of matching pairs are ~0.3 for CLIP, same-modality ones ~0.8), so plain k-means mostly splits by modality
before meaning; a cluster that still holds several is marked mixed. With `bridge` each modality's mean direction is
taken out before clustering, which lines the cones up where the modalities show the same subjects (photos of
the dog, recordings of it barking). It is off by default: where they do not, it joins unrelated pictures and
sounds (measured on generated shapes and tones with `tiny`: purity 0.36 without, 0.32 with).

Each cluster is named by the texts nearest it: labels of a built-in vocabulary (`collection.vocabulary`, each
embedded once per space through several prompt templates) scored against the cluster's centroid of each
modality, and the collection's own nearest passage when it has text.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import faiss
import numpy as np

from ..index.vectors_stream import unit_rows

TRAIN_PER_CLUSTER = 256    # faiss's own bound: more points than this per centroid only slow training
AUTO_KS = (2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64)
AUTO_SAMPLE = 3000         # points the silhouette of each k is measured on
OUTLIER_Z = 3.5            # robust z-score (median / MAD) of an item's distance to its centroid
SEED = 1234


@dataclass
class Cluster:
    id: int
    size: int
    modalities: dict[str, int]
    names: list[tuple[str, float]] = field(default_factory=list)   # best label first, with its score
    passage: tuple[int, str] | None = None                          # the collection's nearest passage
    members: list[int] = field(default_factory=list)                # item ids, nearest the centroid first

    @property
    def name(self) -> str:
        return self.names[0][0] if self.names else f"cluster {self.id}"

    @property
    def mixed(self) -> bool:
        return len(self.modalities) > 1

    def as_dict(self, members: int | None = None) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "size": self.size, "modalities": self.modalities,
                "mixed": self.mixed, "names": [{"label": n, "score": round(s, 4)} for n, s in self.names],
                "passage": None if self.passage is None else {"item_id": self.passage[0], "text": self.passage[1]},
                "members": self.members[:members] if members is not None else self.members}


@dataclass
class Fit:
    """One clustering of a set of items: what later calls reuse (`collection.views` keeps it on disk)."""

    k: int
    bridge: bool
    centroids: np.ndarray            # k x d, unit rows, in the working space (bridged where `bridge`)
    offsets: dict[str, np.ndarray]   # modality -> the mean direction taken out (bridge), else empty
    ids: np.ndarray                  # item ids, ascending
    modality: np.ndarray             # each item's modality (object array)
    labels: np.ndarray               # each item's cluster
    cosines: np.ndarray              # each item's cosine to its centroid (working space)

    def work(self, vecs: np.ndarray, modality: Iterable[str]) -> np.ndarray:
        """Vectors as the clustering sees them: each modality's mean taken out where bridged."""
        if not self.bridge:
            return vecs
        mods = np.asarray(list(modality), dtype=object)
        out = vecs.copy()
        for m, off in self.offsets.items():
            out[mods == m] -= off
        return unit_rows(out)

    def assign(self, vecs: np.ndarray, modality: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        sims = self.work(vecs, modality) @ self.centroids.T
        labels = sims.argmax(axis=1)
        return labels.astype(np.int32), sims[np.arange(len(labels)), labels].astype(np.float32)


def modality_offsets(vecs: np.ndarray, modality: np.ndarray) -> dict[str, np.ndarray]:
    return {str(m): vecs[modality == m].mean(axis=0).astype(np.float32) for m in np.unique(modality)}


def kmeans(x: np.ndarray, k: int, seed: int = SEED) -> np.ndarray:
    """k unit centroids of the unit rows `x` (spherical k-means, trained on at most TRAIN_PER_CLUSTER * k rows)."""
    km = faiss.Kmeans(x.shape[1], k, niter=25, spherical=True, seed=seed, max_points_per_centroid=TRAIN_PER_CLUSTER,
                      min_points_per_centroid=1, verbose=False)
    km.train(np.ascontiguousarray(x, np.float32))
    return unit_rows(km.centroids.copy())


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette under cosine distance (x: unit rows; a few thousand at most: it is all pairs)."""
    d = 1.0 - x @ x.T
    ks = np.unique(labels)
    if ks.size < 2:
        return -1.0
    mean_to = np.stack([d[:, labels == c].mean(axis=1) for c in ks], axis=1)  # includes self: fine at this size
    own = mean_to[np.arange(len(x)), np.searchsorted(ks, labels)]
    mean_to[np.arange(len(x)), np.searchsorted(ks, labels)] = np.inf
    other = mean_to.min(axis=1)
    s = (other - own) / np.maximum(np.maximum(other, own), 1e-9)
    return float(s.mean())


def choose_k(x: np.ndarray, rng: np.random.Generator) -> int:
    """The k of AUTO_KS (up to a fifth of the items) whose clustering of a sample has the best silhouette."""
    sample = x if len(x) <= AUTO_SAMPLE else x[rng.choice(len(x), AUTO_SAMPLE, replace=False)]
    best, best_s = 2, -2.0
    for k in (k for k in AUTO_KS if k <= max(2, len(x) // 5)):
        cents = kmeans(sample, k)
        s = silhouette(sample, (sample @ cents.T).argmax(axis=1))
        if s > best_s + 1e-3:
            best, best_s = k, s
    return best


def fit(ids: np.ndarray, modality: np.ndarray, vecs: np.ndarray, k: int | None, bridge: bool = False) -> Fit:
    """Cluster these items (k None: chosen by silhouette). `vecs`: their unit vectors, rows as `ids`."""
    rng = np.random.default_rng(SEED)
    bridge = bool(bridge) and len(np.unique(modality)) > 1
    offsets = modality_offsets(vecs, modality) if bridge else {}
    proto = Fit(0, bridge, np.empty((0, vecs.shape[1]), np.float32), offsets, ids, modality,
                np.empty(0, np.int32), np.empty(0, np.float32))
    x = proto.work(vecs, modality)
    k = choose_k(x, rng) if k is None else int(k)
    k = max(1, min(k, len(x)))
    limit = TRAIN_PER_CLUSTER * k
    train = x if len(x) <= limit else x[rng.choice(len(x), limit, replace=False)]
    proto.k, proto.centroids = k, kmeans(train, k)
    proto.labels, proto.cosines = proto.assign(vecs, modality)
    return proto


def clusters_of(f: Fit, vecs: np.ndarray) -> list[Cluster]:
    """The clusters of a fit, largest first, members nearest the centroid first."""
    out = []
    for c in range(f.k):
        rows = np.flatnonzero(f.labels == c)
        if not rows.size:
            continue
        mods, counts = np.unique(f.modality[rows], return_counts=True)
        order = rows[np.argsort(-f.cosines[rows], kind="stable")]
        out.append(Cluster(c, int(rows.size), {str(m): int(n) for m, n in zip(mods, counts)},
                           members=[int(i) for i in f.ids[order]]))
    out.sort(key=lambda c: (-c.size, c.id))
    return out


def name_clusters(clusters: list[Cluster], f: Fit, vecs: np.ndarray, labels: list[str] | tuple[str, ...],
                  label_vecs: dict[str, np.ndarray], top: int = 3) -> None:
    """Give each cluster the labels that best tell it apart: per modality of its members, the cosine of each label
    with the centroid of those members, less half its cosine with that modality's whole (a label close to every
    picture says nothing of this one), z-scored over the labels so that text-image and text-audio scales
    mix; weighted by how many members are of that modality. `label_vecs[modality]`: the labels' vectors through
    that modality's prompt templates (`vocabulary.prompts`); a modality without them adds nothing."""
    if not labels:
        return
    whole = {m: unit_rows(vecs[f.modality == m].mean(axis=0)[None])[0] for m in np.unique(f.modality)}
    prior = {m: label_vecs[m] @ w for m, w in whole.items() if m in label_vecs}
    for c in clusters:
        rows = np.flatnonzero(f.labels == c.id)
        score = np.zeros(len(labels), np.float64)
        for m, n in c.modalities.items():
            if m not in prior:
                continue
            centre = unit_rows(vecs[rows[f.modality[rows] == m]].mean(axis=0)[None])[0]
            s = label_vecs[m] @ centre - 0.5 * prior[m]
            score += n / c.size * (s - s.mean()) / max(float(s.std()), 1e-9)
        best = np.argsort(-score)[:top]
        c.names = [(labels[i], float(score[i])) for i in best]


def outliers(f: Fit, z: float = OUTLIER_Z) -> list[tuple[int, float, int]]:
    """(item id, robust z-score, its cluster) of the items much farther from their centroid than the rest of
    their cluster (distance's median and MAD within the cluster), most unusual first."""
    dist = 1.0 - f.cosines
    scores = np.zeros(dist.size, np.float64)
    for c in range(f.k):
        rows = np.flatnonzero(f.labels == c)
        if rows.size < 3:
            scores[rows] = np.inf if f.ids.size >= 20 else 0.0  # a cluster of one or two among many: apart
            continue
        med = np.median(dist[rows])
        mad = np.median(np.abs(dist[rows] - med)) * 1.4826
        spread = max(mad, 0.05 * max(med, 1e-3), 1e-4)  # a tight cluster's MAD near zero would flag noise
        scores[rows] = (dist[rows] - med) / spread
    flagged = np.flatnonzero(scores >= z)
    flagged = flagged[np.argsort(-scores[flagged], kind="stable")]
    return [(int(f.ids[i]), float(scores[i]), int(f.labels[i])) for i in flagged]
