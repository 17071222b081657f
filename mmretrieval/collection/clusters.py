"""Clusters of the collection in the shared space, named zero-shot, and its outliers.

k-means (faiss, spherical) over any mix of modalities. One shared space puts a photo of a dog, the word "dog" and
a bark near each other in direction, but each modality sits in a cone of its own (the modality gap: text-image
cosines of matching pairs are ~0.3 for CLIP, same-modality ones ~0.8), so plain k-means mostly splits by modality
before meaning; a cluster that still holds several is marked mixed. With `bridge` each modality's mean direction is
taken out before clustering, which lines the cones up where the modalities show the same subjects (photos of
the dog, recordings of it barking). It is off by default: where they do not, it joins unrelated pictures and
sounds (measured on generated shapes and tones with `tiny`: purity 0.36 without, 0.32 with).

The collection is never held whole: a `Model` is trained on a sample, then every vector streams past it once
(`assign`), leaving per item only its cluster and cosine, and per cluster and modality the sum of its members'
vectors (what naming needs). Each cluster is named by the texts nearest it: labels of a built-in vocabulary
(`collection.vocabulary`, each embedded once per space through several prompt templates) scored against the
cluster's centroid of each modality, and the collection's own nearest passage when it has text.
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


def sample_size(k: int | None) -> int:
    """How many vectors training reads: enough for k (or the largest automatic k) at faiss's bound."""
    return TRAIN_PER_CLUSTER * (k if k is not None else AUTO_KS[-1])


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
class Model:
    """Centroids, and the mean direction of each modality taken out first where it bridges modalities."""

    k: int
    bridge: bool
    centroids: np.ndarray            # k x d, unit rows, in the working space
    offsets: dict[str, np.ndarray]   # modality -> its mean direction (bridge), else empty

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


@dataclass
class Assignment:
    """Every item's cluster and its cosine to the centroid (working space), and per (cluster, modality) the sum
    of the members' own vectors (their centroids, for naming), per modality the sum of all."""

    ids: np.ndarray                  # int64
    modality: np.ndarray             # object (str)
    labels: np.ndarray               # int32
    cosines: np.ndarray              # float32
    sums: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)
    whole: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, model: Model, ids: np.ndarray, modality: np.ndarray, vecs: np.ndarray) -> None:
        labels, cosines = model.assign(vecs, modality)
        self.ids = np.concatenate([self.ids, ids.astype(np.int64)])
        self.modality = np.concatenate([self.modality, modality.astype(object)])
        self.labels = np.concatenate([self.labels, labels])
        self.cosines = np.concatenate([self.cosines, cosines])
        for m in np.unique(modality):
            rows = modality == m
            self.whole[str(m)] = self.whole.get(str(m), 0) + vecs[rows].sum(axis=0, dtype=np.float64)
            for c in np.unique(labels[rows]):
                sel = rows & (labels == c)
                key = (int(c), str(m))
                self.sums[key] = self.sums.get(key, 0) + vecs[sel].sum(axis=0, dtype=np.float64)

    @classmethod
    def grouped(cls, ids: np.ndarray, modality: np.ndarray, labels: np.ndarray, vecs: np.ndarray) -> "Assignment":
        """Items in groups given beforehand (to name known groups), cosines to their groups' centroids."""
        a = cls(np.asarray(ids, np.int64), np.asarray(modality, object), np.asarray(labels, np.int32),
                np.empty(len(ids), np.float32))
        for c in np.unique(a.labels):
            rows = a.labels == c
            a.cosines[rows] = vecs[rows] @ unit_rows(vecs[rows].mean(axis=0))
            for m in np.unique(a.modality[rows]):
                a.sums[(int(c), str(m))] = vecs[rows & (a.modality == m)].sum(axis=0, dtype=np.float64)
        for m in np.unique(a.modality):
            a.whole[str(m)] = vecs[a.modality == m].sum(axis=0, dtype=np.float64)
        return a

    @classmethod
    def empty(cls) -> "Assignment":
        return cls(np.empty(0, np.int64), np.empty(0, object), np.empty(0, np.int32), np.empty(0, np.float32))


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
    own_col = np.searchsorted(ks, labels)
    own = mean_to[np.arange(len(x)), own_col]
    mean_to[np.arange(len(x)), own_col] = np.inf
    other = mean_to.min(axis=1)
    s = (other - own) / np.maximum(np.maximum(other, own), 1e-9)
    return float(s.mean())


def choose_k(x: np.ndarray, rng: np.random.Generator) -> int:
    """The k of AUTO_KS (up to a fifth of the items) whose clustering of a sample has the best silhouette."""
    if len(x) < 4:  # too few to compare splits: one cluster
        return 1
    sample = x if len(x) <= AUTO_SAMPLE else x[rng.choice(len(x), AUTO_SAMPLE, replace=False)]
    best, best_s = 2, -2.0
    for k in (k for k in AUTO_KS if k <= max(2, len(x) // 5)):
        cents = kmeans(sample, k)
        s = silhouette(sample, (sample @ cents.T).argmax(axis=1))
        if s > best_s + 1e-3:
            best, best_s = k, s
    return best


def train(modality: np.ndarray, vecs: np.ndarray, k: int | None, bridge: bool = False) -> Model:
    """A model fitted on a sample of the items (k None: chosen by silhouette). `vecs`: their unit vectors."""
    rng = np.random.default_rng(SEED)
    bridge = bool(bridge) and len(np.unique(modality)) > 1
    model = Model(0, bridge, np.empty((0, vecs.shape[1]), np.float32), modality_offsets(vecs, modality) if bridge else {})
    x = model.work(vecs, modality)
    k = choose_k(x, rng) if k is None else int(k)
    k = max(1, min(k, len(x)))
    limit = TRAIN_PER_CLUSTER * k
    model.k, model.centroids = k, kmeans(x if len(x) <= limit else x[rng.choice(len(x), limit, replace=False)], k)
    return model


def clusters_of(model: Model, a: Assignment) -> list[Cluster]:
    """The clusters, largest first, members nearest the centroid first."""
    out = []
    for c in range(model.k):
        rows = np.flatnonzero(a.labels == c)
        if not rows.size:
            continue
        mods, counts = np.unique(a.modality[rows], return_counts=True)
        order = rows[np.argsort(-a.cosines[rows], kind="stable")]
        out.append(Cluster(c, int(rows.size), {str(m): int(n) for m, n in zip(mods, counts)},
                           members=[int(i) for i in a.ids[order]]))
    out.sort(key=lambda c: (-c.size, c.id))
    return out


def centre(a: Assignment, cluster: int, modality: str | None = None) -> np.ndarray:
    """The unit mean of a cluster's members' own vectors (of one modality, or all)."""
    parts = [v for (c, m), v in a.sums.items() if c == cluster and (modality is None or m == modality)]
    return unit_rows(np.sum(parts, axis=0).astype(np.float32))


def name_clusters(clusters: list[Cluster], a: Assignment, labels: list[str] | tuple[str, ...],
                  label_vecs: dict[str, np.ndarray], top: int = 3) -> None:
    """Give each cluster the labels that best tell it apart: per modality of its members, the cosine of each label
    with the centroid of those members, less half its cosine with that modality's whole (a label close to every
    picture says nothing of this one), z-scored over the labels so that text-image and text-audio scales
    mix; weighted by how many members are of that modality. `label_vecs[modality]`: the labels' vectors through
    that modality's prompt templates (`vocabulary.prompts`); a modality without them adds nothing."""
    if not labels:
        return
    prior = {m: label_vecs[m] @ unit_rows(w.astype(np.float32)) for m, w in a.whole.items() if m in label_vecs}
    for c in clusters:
        score = np.zeros(len(labels), np.float64)
        for m, n in c.modalities.items():
            if m not in prior:
                continue
            s = label_vecs[m] @ centre(a, c.id, m) - 0.5 * prior[m]
            score += n / c.size * (s - s.mean()) / max(float(s.std()), 1e-9)
        if not score.any():
            continue
        best = np.argsort(-score)[:top]
        c.names = [(labels[i], float(score[i])) for i in best]


def outliers(model: Model, a: Assignment, z: float = OUTLIER_Z) -> list[tuple[int, float, int]]:
    """(item id, robust z-score, its cluster) of the items much farther from their centroid than the others of
    their modality in their cluster (the distance's median and MAD; where a cluster holds fewer than five of a
    modality, those of the modality in every cluster: a few pictures among passages sit across the modality gap
    from any centroid, which says nothing about them), most unusual first. A cluster of one or two among twenty
    or more items is itself apart (score inf)."""
    dist = 1.0 - a.cosines
    scores = np.zeros(dist.size, np.float64)

    def robust(rows: np.ndarray, ref: np.ndarray) -> None:
        med, p90 = np.median(dist[ref]), np.percentile(dist[ref], 90)
        mad = np.median(np.abs(dist[ref] - med)) * 1.4826
        # The spread is the larger of the MAD and what the 90th percentile says (both sigma for a normal): a cluster
        # with a dense core and a long tail (many near-identical passages, then the rest) would otherwise flag its
        # whole tail (the real-world test files: 335 of 8,407 items, now few). A floor keeps a tight group from
        # flagging noise.
        spread = max(mad, (p90 - med) / 1.2816, 0.05 * max(med, 1e-3), 1e-4)
        scores[rows] = (dist[rows] - med) / spread

    for c in range(model.k):
        in_c = a.labels == c
        if in_c.sum() < 3:
            scores[in_c] = np.inf if a.ids.size >= 20 else 0.0
            continue
        for m in np.unique(a.modality[in_c]):
            rows = np.flatnonzero(in_c & (a.modality == m))
            ref = rows if rows.size >= 5 else np.flatnonzero(a.modality == m)
            robust(rows, ref)
    flagged = np.flatnonzero(scores >= z)
    flagged = flagged[np.argsort(-scores[flagged], kind="stable")]
    return [(int(a.ids[i]), float(scores[i]), int(a.labels[i])) for i in flagged]
