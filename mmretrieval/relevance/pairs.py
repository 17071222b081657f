"""Observations from a pairs file, shared by `mmr calibrate`, `mmr audit` and `mmr compare`.

The pairs' images, sounds and captions are encoded with a space and searched against each other the way an
index would be: for each pair of modalities (text->image, image->text, text->audio, audio->text, and
image->image / audio->audio / text->text when rows carry labels), every item of the query modality asks for
its top k among the items of the result modality (itself excluded), and each hit is recorded with its cosine,
its null z-score (against a sample of the result modality, as at search time) and whether it is relevant:
it shares a label with the query, or, without labels, it is the query's own partner.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DecodeError, UsageError
from ..train.pairs import Pair
from .profile import NULL_SAMPLE

if TYPE_CHECKING:  # the space is passed in: importing this module does not import torch
    from ..space.runtime import Space

MODALITIES = ("image", "audio", "text")


@dataclass
class Side:
    keys: list[str]             # file paths, or caption texts
    labels: list[frozenset]     # what a hit must share with the query (labels, or the partner's keys)
    vectors: np.ndarray


@dataclass
class PairSet:
    sides: dict[str, Side]
    labelled: bool
    skipped: list[tuple[str, str]]

    def pairs_of_modalities(self) -> list[tuple[str, str]]:
        """The (query, result) modalities these pairs can score."""
        out = []
        for q in MODALITIES:
            for r in MODALITIES:
                if q not in self.sides or r not in self.sides:
                    continue
                if q == r and not self.labelled:
                    continue  # without labels, nothing says which other item of one's own modality is right
                if q != r and "text" not in (q, r):
                    continue  # image<->audio needs rows that pair them; not from caption pairs
                out.append((q, r))
        return out


def encode_pairs(space: Space, pairs: list[Pair], *, batch_size: int = 64) -> PairSet:
    labelled = all(p.label for p in pairs)
    sides: dict[str, Side] = {}
    skipped: list[tuple[str, str]] = []
    cap_tags: dict[str, set] = {}
    for m in ("image", "audio"):
        if m == "audio" and space.audio is None:
            continue
        rows = [p for p in pairs if getattr(p, m) and p.caption]
        if not rows:
            continue
        tags: dict[str, set] = {}
        for p in rows:
            key = getattr(p, m)
            tag = p.label if labelled else f"{m}:{key}"
            tags.setdefault(key, set()).add(tag)
            cap_tags.setdefault(p.caption, set()).add(tag)
        keys, vecs = [], []
        for key in sorted(tags):
            try:
                vecs.append(_encode(space, m, key))
                keys.append(key)
            except DecodeError as e:
                skipped.append((key, str(e)))
        if keys:
            sides[m] = Side(keys, [frozenset(tags[k]) for k in keys], np.stack(vecs).astype(np.float32))
    if not sides:
        raise UsageError("the pairs hold no (image or audio, caption) rows this space can encode")
    caps = sorted(cap_tags)
    sides["text"] = Side(caps, [frozenset(cap_tags[c]) for c in caps],
                         np.asarray(space.text.encode(caps, batch_size=batch_size), np.float32))
    return PairSet(sides, labelled, skipped)


def _encode(space: Space, modality: str, path: str) -> np.ndarray:
    if modality == "image":
        return space.image.encode([path], batch_size=1)[0]
    return space.audio.encode_clip(path)


def null_sample(n: int, seed: int = 0) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, min(NULL_SAMPLE, n), replace=False))


@dataclass
class Observations:
    scores: np.ndarray      # cosine of each hit
    z: np.ndarray           # its null z-score
    relevant: np.ndarray    # bool
    rank: np.ndarray        # 0-based rank within its query's hits
    query: np.ndarray       # index of the query


def top_hits(ps: PairSet, query_modality: str, modality: str, k: int = 10, seed: int = 0) -> Observations:
    q, r = ps.sides[query_modality], ps.sides[modality]
    # Every query, also those with nothing relevant among these items (a caption of a sound, asking for
    # images): people type such queries, and their hits teach the calibration what an irrelevant best match
    # scores.
    queries = list(range(len(q.keys)))
    if len(r.keys) - (query_modality == modality) < 2:  # nothing to rank against
        empty = np.empty(0)
        return Observations(empty, empty, empty.astype(bool), empty.astype(int), empty.astype(int))
    sims = q.vectors[queries] @ r.vectors.T
    if query_modality == modality:
        sims[np.arange(len(queries)), queries] = -np.inf  # not itself
    null = sims[:, null_sample(len(r.keys), seed)]
    finite = np.where(np.isfinite(null), null, np.nan)
    mean, std = np.nanmean(finite, axis=1), np.maximum(np.nanstd(finite, axis=1), 1e-6)
    kk = min(k, len(r.keys) - (query_modality == modality))
    top = np.argsort(-sims, axis=1)[:, :kk]
    rows = np.repeat(np.arange(len(queries)), kk)
    cols = top.reshape(-1)
    scores = sims[rows, cols]
    rel = np.array([bool(q.labels[queries[a]] & r.labels[b]) for a, b in zip(rows, cols)])
    return Observations(scores, (scores - mean[rows]) / std[rows], rel, np.tile(np.arange(kk), len(queries)), rows)


def matched_and_random(ps: PairSet, query_modality: str, modality: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cosines of matched pairs (relevant to each other) and of random pairs of these two modalities."""
    q, r = ps.sides[query_modality], ps.sides[modality]
    sims = q.vectors @ r.vectors.T
    rel = np.array([[bool(a & b) for b in r.labels] for a in q.labels])
    if query_modality == modality:
        np.fill_diagonal(rel, False)
    matched = sims[rel]
    rng = np.random.default_rng(seed)
    n = max(1000, matched.size)
    qi, ri = rng.integers(len(q.keys), size=n), rng.integers(len(r.keys), size=n)
    keep = qi != ri if query_modality == modality else np.ones(n, bool)
    return matched, sims[qi[keep], ri[keep]]

