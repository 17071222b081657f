"""`mmr eval`: retrieval quality of a space on your own pairs, and the calibration audit.

For image–text and audio–text pairs: Recall@1/5/10 in both directions (a hit is the paired item or one
of its captions), precision@k by label when rows carry one (a hit shares the label: e.g. the same shape
and colour), and the distribution of cosine scores for matched vs random pairs — cross-modal scores sit
on their own scale, so a threshold is only meaningful against this audit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DecodeError, UsageError
from ..space.runtime import Space
from ..space.precision import describe
from .pairs import Pair, read_pairs

KS = (1, 5, 10)


@dataclass
class _Side:
    keys: list[str]          # item paths
    labels: list[str | None]
    vecs: np.ndarray


def _recall(sims: np.ndarray, relevant: list[set[int]], k: int) -> float:
    top = np.argsort(-sims, axis=1)[:, :k]
    return float(np.mean([bool(relevant[i] & set(top[i].tolist())) for i in range(sims.shape[0])]))


def _precision(sims: np.ndarray, q_labels: list[str | None], d_labels: list[str | None], k: int) -> float | None:
    if any(lbl is None for lbl in q_labels) or any(lbl is None for lbl in d_labels):
        return None
    top = np.argsort(-sims, axis=1)[:, :k]
    d = np.array(d_labels, dtype=object)
    return float(np.mean([(d[top[i]] == q_labels[i]).mean() for i in range(sims.shape[0])]))


def _stats(x: np.ndarray) -> dict[str, float]:
    return {"mean": round(float(x.mean()), 4), "std": round(float(x.std()), 4),
            **{f"p{q}": round(float(np.percentile(x, q)), 4) for q in (5, 50, 95)}}


def evaluate_pairs(space: Space, pairs: list[Pair], modality: str, *, seed: int = 0, batch_size: int = 64) -> dict[str, Any]:
    rows = [p for p in pairs if getattr(p, modality) and p.caption]
    if not rows:
        return {}
    items = sorted({getattr(p, modality) for p in rows})
    caps = sorted({p.caption for p in rows})
    ok_items, vecs, skipped = [], [], []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        try:
            vecs.append(_encode_items(space, modality, chunk, batch_size))
            ok_items += chunk
        except DecodeError:
            for it in chunk:
                try:
                    vecs.append(_encode_items(space, modality, [it], 1))
                    ok_items.append(it)
                except DecodeError as e:
                    skipped.append((it, str(e)))
    if not ok_items:
        raise UsageError(f"none of the {modality} files in the pairs could be read")
    iv = np.concatenate(vecs)
    tv = space.text.encode(caps, batch_size=batch_size)
    item_ix = {k: i for i, k in enumerate(ok_items)}
    cap_ix = {c: i for i, c in enumerate(caps)}
    item_label: dict[int, str | None] = {}
    cap_label: dict[int, str | None] = {}
    item_caps: dict[int, set[int]] = {}
    cap_items: dict[int, set[int]] = {}
    matched = []
    for p in rows:
        i = item_ix.get(getattr(p, modality))
        if i is None:
            continue
        c = cap_ix[p.caption]
        item_caps.setdefault(i, set()).add(c)
        cap_items.setdefault(c, set()).add(i)
        item_label[i] = p.label
        cap_label[c] = p.label
        matched.append(float(iv[i] @ tv[c]))
    cap_rows = sorted(cap_items)
    sims = iv @ tv.T                                    # [items, captions]
    out: dict[str, Any] = {"items": len(ok_items), "captions": len(caps), "skipped": skipped}
    i_rel = [item_caps.get(i, set()) for i in range(len(ok_items))]
    t_rel = [cap_items[c] for c in cap_rows]
    t_sims = sims.T[cap_rows]
    out[f"{modality}_to_text"] = {f"R@{k}": round(_recall(sims, i_rel, k), 4) for k in KS}
    out[f"text_to_{modality}"] = {f"R@{k}": round(_recall(t_sims, t_rel, k), 4) for k in KS}
    il = [item_label.get(i) for i in range(len(ok_items))]
    cl = [cap_label.get(c) for c in range(len(caps))]
    p1 = _precision(sims, il, cl, 5)
    if p1 is not None:
        out[f"{modality}_to_text"]["P@5"] = round(p1, 4)
        out[f"text_to_{modality}"]["P@5"] = round(_precision(t_sims, [cl[c] for c in cap_rows], il, 5), 4)
    rng = np.random.default_rng(seed)
    ri = rng.integers(len(ok_items), size=max(1000, len(matched)))
    rc = rng.integers(len(caps), size=ri.size)
    random_scores = np.einsum("ij,ij->i", iv[ri], tv[rc])
    out["calibration"] = {"matched": _stats(np.array(matched)), "random": _stats(random_scores)}
    return out


def _encode_items(space: Space, modality: str, paths: list[str], batch_size: int) -> np.ndarray:
    if modality == "image":
        return space.image.encode(paths, batch_size=batch_size)
    return np.stack([space.audio.encode_clip(p) for p in paths])


def evaluate(space: Space, pairs_file: str, *, modalities: tuple[str, ...] = ("image", "audio")) -> dict[str, Any]:
    pairs = read_pairs(pairs_file)
    report: dict[str, Any] = {"space": space.spec.name, "fingerprint": space.fingerprint,
                              "precision": describe(space.precision), "pairs": str(pairs_file)}
    for m in modalities:
        if m == "audio" and space.audio is None:
            if any(p.audio for p in pairs):
                report["audio"] = {"skipped": "this space has no audio tower"}
            continue
        r = evaluate_pairs(space, pairs, m)
        if r:
            report[m] = r
    if not any(k in report for k in modalities):
        raise UsageError(f"{pairs_file} holds no (image|audio, caption) pairs this space can evaluate")
    return report
