"""Relevance measured through an index: labelled pairs are indexed (images, sounds, and each caption as a
text file), every item asks the engine for its top k of a modality, and each hit is checked against the
labels. What the tests and `scripts/bench/relevance.py` report: the precision of the hits a threshold keeps,
per pair of modalities, for calibrated relevance, uncalibrated relevance and raw cosine."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..train.pairs import Pair

if TYPE_CHECKING:
    from ..engine import Engine

TARGET_PAIRS = (("text", "image"), ("image", "text"), ("text", "audio"), ("audio", "text"), ("image", "image"))
# every pair of modalities with relevant hits among the labelled pairs (image->audio has none: labels differ)
EVERY_PAIR = TARGET_PAIRS + (("audio", "audio"), ("text", "text"))


@dataclass
class HitRecord:
    relevance: np.ndarray
    score: np.ndarray
    relevant: np.ndarray


def write_captions(pairs: list[Pair], folder: Path) -> dict[str, set[str]]:
    """Each distinct caption as a text file (an indexable passage); returns caption -> labels."""
    folder.mkdir(parents=True, exist_ok=True)
    labels: dict[str, set[str]] = {}
    for p in pairs:
        if p.caption:
            labels.setdefault(p.caption, set()).add(p.label or "")
    for cap in labels:
        (folder / f"{hashlib.sha1(cap.encode()).hexdigest()[:16]}.txt").write_text(cap + "\n")
    return labels


def labels_of(pairs: list[Pair]) -> dict[str, set[str]]:
    """Labels by item key: a file's resolved path for images and sounds, "text:CAPTION" for a caption."""
    out: dict[str, set[str]] = {}
    for p in pairs:
        for key in (p.image, p.audio):
            if key:
                out.setdefault(str(Path(key).resolve()), set()).add(p.label or "")
        if p.caption:
            out.setdefault(f"text:{p.caption}", set()).add(p.label or "")
    return out


def item_key(modality: str, path: str, text: str | None) -> str:
    """The key `labels_of` files an indexed item under (a caption file by its text)."""
    return f"text:{(text or '').strip()}" if modality == "text" else path


def collect(engine: Engine, pairs: list[Pair], query_modality: str, modality: str, k: int = 10,
            cutoff: str | None = None) -> HitRecord:
    """Top-k hits of `modality` for every item of `query_modality` among the pairs (every caption, for text)."""
    label_of = labels_of(pairs)
    if query_modality == "text":  # every caption, also those with nothing relevant in `modality`
        queries = sorted({p.caption for p in pairs if p.caption})
    else:
        queries = sorted({str(Path(getattr(p, query_modality)).resolve()) for p in pairs if getattr(p, query_modality)})
    rel, score, ok = [], [], []
    for q in queries:
        qlab = label_of[f"text:{q}" if query_modality == "text" else q]
        hits = engine.search(**{query_modality: q}, types=[modality], k=k + (query_modality == modality), cutoff=cutoff)
        own = (lambda h: (h.text or "").strip() == q) if modality == "text" else (lambda h: h.path == q)
        hits = [h for h in hits if not (query_modality == modality and own(h))][:k]
        for h in hits:
            hlab = label_of.get(item_key(modality, h.path, h.text), set())
            rel.append(np.nan if h.relevance is None else h.relevance)
            score.append(h.score)
            ok.append(bool(qlab & hlab))
    return HitRecord(np.array(rel), np.array(score), np.array(ok, bool))


def precision_at(records: dict[tuple[str, str], HitRecord], threshold: float, by: str = "relevance") -> dict[str, dict]:
    """Per pair: precision of the hits at or above `threshold` (of relevance or raw score) and their share."""
    out = {}
    for (q, m), r in records.items():
        x = r.relevance if by == "relevance" else r.score
        keep = np.nan_to_num(x, nan=-np.inf) >= threshold
        out[f"{q}->{m}"] = {"precision": float(r.relevant[keep].mean()) if keep.any() else None,
                            "kept": float(keep.mean()), "hits": int(keep.sum())}
    return out


def spread(table: dict[str, dict]) -> float | None:
    ps = [v["precision"] for v in table.values()]
    return None if any(p is None for p in ps) else float(max(ps) - min(ps))


def best_recall(x: np.ndarray, relevant: np.ndarray, precision: float = 0.8) -> float:
    """The largest share of the relevant hits one threshold on `x` keeps while the kept hits' precision stays
    at or above `precision` (0 when none does)."""
    if not relevant.any():
        return 0.0
    o = np.argsort(-np.nan_to_num(x, nan=-np.inf), kind="stable")
    tp = np.cumsum(relevant[o])
    ok = tp / np.arange(1, o.size + 1) >= precision
    return float(tp[ok].max() / relevant.sum()) if ok.any() else 0.0


def at_level(records: dict[tuple[str, str], HitRecord], level: float = 0.5) -> dict[str, dict]:
    """Per pair: precision and recall (share of the relevant top-k hits) of the hits at relevance >= `level`,
    and the ceiling: the best recall any per-pair threshold, on cosine or on relevance, reaches at precision
    >= 0.8."""
    out = {}
    for (q, m), r in records.items():
        keep = np.nan_to_num(r.relevance, nan=-1.0) >= level
        out[f"{q}->{m}"] = {
            "precision": round(float(r.relevant[keep].mean()), 4) if keep.any() else None,
            "recall": round(float((r.relevant & keep).sum() / max(r.relevant.sum(), 1)), 4),
            "ceiling": round(max(best_recall(r.score, r.relevant), best_recall(r.relevance, r.relevant)), 4),
            "hits": int(r.relevant.size)}
    return out
