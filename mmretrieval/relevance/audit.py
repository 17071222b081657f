"""The calibration audit: are matched pairs clearly above random ones, per pair of modalities?

With pairs (`mmr audit --pairs FILE`): cosine distributions of matched pairs (an item and its caption, or two
items sharing a label) against random pairs; the share of matched pairs below 0.7 (the line the seed article
warns about for same-modality embeddings) and below the random pairs' 99th percentile (the same warning on
a cross-modal scale: a matched pair a random one could beat); the overlap of the two distributions; and the
modality gap (the distance between the modalities' mean vectors: CLIP-style spaces keep each modality in
its own cone, which is why cross-modal cosines run lower). Without pairs, on an index: per pair of
modalities, the cosine of each probe item's best match against what a random item scores.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UsageError
from ..train.pairs import read_pairs
from .pairs import encode_pairs, matched_and_random
from .profile import DEFAULT_MIDPOINT, TOP, probe_z, standing_top, to_dict

if TYPE_CHECKING:  # an index's audit runs no tower: torch is not imported for it
    from ..space.runtime import Space

SEED_LINE = 0.7


def _stats(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, np.float64)
    return {"n": int(x.size), "mean": round(float(x.mean()), 4), "std": round(float(x.std()), 4),
            **{f"p{q}": round(float(np.percentile(x, q)), 4) for q in (1, 5, 50, 95, 99)}}


def overlap(a: np.ndarray, b: np.ndarray, bins: int = 60) -> float:
    """Shared area of the two normalised histograms (0: apart, 1: the same distribution)."""
    lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    if hi <= lo:
        return 1.0
    ha, edges = np.histogram(a, bins=bins, range=(lo, hi))
    hb, _ = np.histogram(b, bins=edges)
    return float(np.minimum(ha / ha.sum(), hb / hb.sum()).sum())


def audit_pairs(space: Space, pairs_file: str | Path) -> dict[str, Any]:
    ps = encode_pairs(space, read_pairs(pairs_file))
    report: dict[str, Any] = {"space": space.spec.name, "fingerprint": space.fingerprint, "pairs_file": str(pairs_file),
                              "kind": "pairs", "pairs": {}, "skipped": [list(s) for s in ps.skipped]}
    for qm, rm in ps.pairs_of_modalities():
        if (rm, qm) in [tuple(k.split("->")) for k in report["pairs"]]:
            continue  # cosine is symmetric: image->text is text->image
        matched, random = matched_and_random(ps, qm, rm)
        if matched.size == 0:
            continue
        p99 = float(np.percentile(random, 99))
        report["pairs"][f"{qm}->{rm}"] = {
            "matched": _stats(matched), "random": _stats(random),
            "matched_below_0.7": round(float((matched < SEED_LINE).mean()), 4),
            "matched_below_random_p99": round(float((matched < p99).mean()), 4),
            "overlap": round(overlap(matched, random), 4),
            "_matched": matched, "_random": random}
    sides = ps.sides
    report["modality_gap"] = {f"{a}-{b}": _gap(sides[a].vectors, sides[b].vectors)
                              for a, b in (("image", "text"), ("audio", "text"), ("image", "audio"))
                              if a in sides and b in sides}
    if not report["pairs"]:
        raise UsageError(f"{pairs_file}: no matched pairs to audit")
    return report


def audit_index(engine: Any, probes: int = 256, seed: int = 0) -> dict[str, Any]:
    """Best-match vs random cosines per pair of modalities, from the index's own items (no labels)."""
    scorer = engine.relevance
    scorer.refresh()
    store = engine.store
    ids = {m: store.catalog.item_ids([m]) for m in scorer.profile.counts}
    report: dict[str, Any] = {"space": (store.space_record() or {}).get("spec", {}).get("name"), "kind": "index",
                              "index": str(engine.path), "pairs": {}}
    curves = to_dict(scorer.profile)["curves"]
    for qm, rm, found, q, matches in scorer.probe(ids, scorer.null, probes, seed):
        best = matches[:, 0][np.isfinite(matches[:, 0])]
        random = q @ scorer.null[rm].T
        if qm == rm:  # a probe against itself is no random pair
            random = random[found[:, None] != scorer.null_ids[rm][None, :]]
        random = random.reshape(-1)
        # the relevance search would give each probe's top matches, beside the cosines they come from
        z = probe_z(q, matches, scorer.null[rm])
        shown = np.isfinite(z)
        rel = np.concatenate([scorer.of_z(qm, rm, zr[f], mr[f], standing_top(zr[f], mr[f], scorer.profile.counts[rm]))
                              for zr, mr, f in zip(z, matches, shown)]) if z.size else np.empty(0)
        key = f"{qm}->{rm}"
        report["pairs"][key] = {"best_match": _stats(best), "random": _stats(random),
                                "overlap": round(overlap(best, random), 4),
                                "relevance": {"source": "calibrated" if scorer.calibrated(qm, rm) else "self-labelled",
                                              **curves.get(key, {"z_at_0.5": DEFAULT_MIDPOINT, "probes": 0}),
                                              "heading_a_group": curves.get(f"{key}{TOP}"),
                                              "top_matches_at_or_above_0.5": round(float((rel >= 0.5).mean()), 4),
                                              "cosine_where_0.5": _where(matches[shown], rel, 0.5)},
                                "_matched": best, "_random": random, "_hits": (matches[shown], rel)}
    if not report["pairs"]:
        raise UsageError("the index holds too few items (at least 8 of a modality) to audit")
    return report


def _where(cosines: np.ndarray, relevance: np.ndarray, level: float) -> float | None:
    """The median cosine of the probes' matches whose relevance lies near `level` (None: none there)."""
    near = np.abs(relevance - level) <= 0.1
    return round(float(np.median(cosines[near])), 4) if near.any() else None


def _gap(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    ma, mb = a.mean(axis=0), b.mean(axis=0)
    return {"centroid_distance": round(float(np.linalg.norm(ma - mb)), 4),
            "centroid_cosine": round(float(ma @ mb / (np.linalg.norm(ma) * np.linalg.norm(mb))), 4)}


def public(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the raw score arrays (for JSON)."""
    out = dict(report)
    out["pairs"] = {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in report["pairs"].items()}
    return out


def plot(report: dict[str, Any], path: str | Path) -> Path:
    """One histogram panel per pair of modalities: matched (or best-match) vs random cosines; on an index, the
    relevance of the probes' top matches too (a second axis)."""
    try:
        import matplotlib
    except ImportError:
        raise UsageError("the audit's PNG needs matplotlib: pip install 'mmretrieval[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["pairs"])
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    label = "matched" if report["kind"] == "pairs" else "best match"
    for ax, name in zip(axes.flat, names):
        r = report["pairs"][name]
        m, rnd = r["_matched"], r["_random"]
        bins = np.linspace(min(m.min(), rnd.min()), max(m.max(), rnd.max()), 50)
        ax.hist(rnd, bins=bins, density=True, alpha=0.55, color="#8c8c8c", label="random pairs")
        ax.hist(m, bins=bins, density=True, alpha=0.65, color="#1f77b4", label=label)
        ax.axvline(float(np.percentile(rnd, 99)), color="#d62728", ls="--", lw=1, label="random p99")
        if report["kind"] == "pairs":
            ax.axvline(SEED_LINE, color="black", ls=":", lw=1, label="0.7")
        if "_hits" in r:  # the relevance the index's estimate gives those cosines, on its own axis
            cos, rel = r["_hits"]
            twin = ax.twinx()
            twin.scatter(cos, rel, s=3, alpha=0.25, color="#2ca02c", label="relevance of top matches")
            twin.axhline(0.5, color="#2ca02c", ls=":", lw=1)
            twin.set_ylim(-0.03, 1.03)
            twin.set_ylabel("relevance", fontsize=8, color="#2ca02c")
        ax.set_title(f"{name.replace('->', ' → ')}  (overlap {r['overlap']:.2f})", fontsize=10)
        ax.set_xlabel("cosine")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"calibration audit: {report.get('space')} ({report['kind']})", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
