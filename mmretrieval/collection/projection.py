"""A map of the collection: its vectors projected to two dimensions, and drawn as a PNG.

PCA (numpy, fitted on a sample) by default; UMAP where the `umap-learn` package is installed and asked for. The
vectors are taken as the clustering sees them (each modality's mean taken out where it bridges modalities).
"""
from __future__ import annotations

import io
from typing import Any, Sequence

import numpy as np

from ..errors import UsageError

METHODS = ("pca", "umap")
FIT_SAMPLE = 20_000
MARKERS = {"image": "o", "audio": "^", "text": "s"}


class Projection:
    """Two axes fitted on a sample of the (working) vectors, then applied to any of them: the collection is
    projected chunk by chunk, never held whole. PCA's axes are kept (a map redrawn after a small change places
    the old points where they were); UMAP (umap-learn, if installed) maps new points with its `transform`."""

    def __init__(self, sample: np.ndarray, method: str = "pca", seed: int = 0) -> None:
        if method not in METHODS:
            raise UsageError(f"unknown projection {method!r}; valid: {', '.join(METHODS)}")
        self.method = method
        rng = np.random.default_rng(seed)
        if len(sample) > FIT_SAMPLE:
            sample = sample[rng.choice(len(sample), FIT_SAMPLE, replace=False)]
        self.mean = sample.mean(axis=0) if len(sample) else np.zeros(sample.shape[1], np.float32)
        self.umap = None
        if method == "umap":
            try:
                import umap  # type: ignore[import-not-found]
            except ImportError:
                raise UsageError("the umap projection needs the umap-learn package (pip install umap-learn); "
                                 "pca needs nothing") from None
            self.umap = umap.UMAP(n_components=2, metric="cosine", random_state=seed).fit(sample)
            return
        _, _, vt = np.linalg.svd(sample - self.mean, full_matrices=False) if len(sample) > 1 else \
            (None, None, np.zeros((0, sample.shape[1]), np.float32))
        axes = vt[:2]
        if axes.shape[0] < 2:
            axes = np.vstack([axes, np.zeros((2 - axes.shape[0], sample.shape[1]), np.float32)])
        for a in axes:  # a fixed sign, so that a map fitted again after small changes does not mirror
            if a.size and a[np.argmax(np.abs(a))] < 0:
                a *= -1
        self.axes = axes.astype(np.float32)

    @classmethod
    def from_axes(cls, mean: np.ndarray, axes: np.ndarray) -> "Projection":
        """PCA's axes kept from an earlier fit."""
        proj = cls.__new__(cls)
        proj.method, proj.umap, proj.mean, proj.axes = "pca", None, mean, axes
        return proj

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.empty((0, 2), np.float32)
        if self.umap is not None:
            return self.umap.transform(x).astype(np.float32)
        return ((x - self.mean) @ self.axes.T).astype(np.float32)


def draw_png(coords: np.ndarray, clusters: np.ndarray, modality: Sequence[str], names: dict[int, str],
             width: int = 1200, height: int = 900, title: str = "") -> bytes:
    """The map as a PNG of `width` x `height` pixels: a point per item (colour: its cluster, marker: its
    modality), each cluster's name at its members' middle."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("drawing the map needs matplotlib (pip install 'mmretrieval[plot]')") from None
    dpi = 100
    fig, ax = plt.subplots(figsize=(width / dpi, height / dpi), dpi=dpi)
    cmap = plt.get_cmap("tab20")
    mods = np.asarray(list(modality), dtype=object)
    for m in sorted(set(mods.tolist())):
        rows = mods == m
        ax.scatter(coords[rows, 0], coords[rows, 1], c=[cmap(int(c) % 20) for c in clusters[rows]],
                   marker=MARKERS.get(m, "D"), s=18, alpha=0.8, linewidths=0)
    for c, name in names.items():
        rows = clusters == c
        if rows.any():
            cx, cy = np.median(coords[rows], axis=0)
            ax.annotate(name, (cx, cy), ha="center", fontsize=9, weight="bold",
                        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.75, "lw": 0})
    if len(set(mods.tolist())) > 1:  # markers say the modality; colours are clusters, so the key is grey
        from matplotlib.lines import Line2D

        ax.legend(handles=[Line2D([], [], marker=MARKERS.get(m, "D"), color="#666", linestyle="", label=m)
                           for m in sorted(set(mods.tolist()))], loc="best", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def points(coords: np.ndarray, ids: np.ndarray, clusters: np.ndarray, modality: Sequence[str]) -> list[dict[str, Any]]:
    """The map as data (what the page draws): one point per item."""
    return [{"item_id": int(i), "x": round(float(x), 5), "y": round(float(y), 5), "cluster": int(c), "modality": str(m)}
            for i, (x, y), c, m in zip(ids, coords, clusters, modality)]
