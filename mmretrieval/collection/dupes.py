"""Near-duplicates: groups of items that are the same content saved again, best copy first.

Two stages, because vectors alone cannot tell a copy from a near neighbour: CLIP-like towers rate the next shot
of a burst (the object moved) closer than a 5 % crop of the same photo (measured with the shipped `tiny`: crops
0.92-0.99, burst shots 0.987-0.999), which is how a fixed cosine cut-off flags thousands of distinct burst shots
(immich #31487). So:

1. candidates: every pair of items of one modality within cosine `radius` of each other, found by the index's own
   range search (`VectorIndex.range_search`: no all-pairs loop), for the items added since the last run only;
2. confirmation: each candidate pair's sketches (`modalities.sketch`: pixels over small crops, a spectrogram, a
   passage's word triples) must be alike at `likeness` or more;
3. groups: pairs joined into groups, each group cut around its best member (every member confirmed against it,
   so a chain of small steps never joins two different pictures), then groups that join the same files merged:
   one recording saved as WAV and as FLAC is one group of two files with all their windows, not 40 groups.

Byte-for-byte copies (one content hash) always form a group, marked exact.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

# Candidate cosine by modality: below every copy the bench made (scripts/bench/dupes.py), so that the sketches,
# not the vectors, decide.
RADIUS = {"image": 0.85, "audio": 0.85, "text": 0.90}
DEFAULT_RADIUS = 0.85
# IVF lists a candidate search probes: two vectors at cosine 0.85 or more nearly always share a list or its next
# ones; probing as many as a search does (64 at 1 M) made the candidate pass 8x slower for no pair more
# (scripts/bench/collection_views.py scale).
CANDIDATE_NPROBE = 8


@dataclass
class Member:
    item_id: int
    file_id: int
    path: str
    locator: dict[str, Any]
    size: int
    date: float | None
    hash: str | None
    items: int = 1            # a file-level group: how many of this file's items are in it
    cosine: float = 1.0       # to the group's best member
    likeness: float = 1.0     # its sketch's, to the best member's
    exact: bool = False       # byte-for-byte the same file as another member
    text: str | None = None   # a passage's words

    def as_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "path": self.path, "locator": self.locator, "text": self.text,
                "size": self.size, "date": self.date, "items": self.items, "cosine": round(self.cosine, 4),
                "likeness": round(self.likeness, 4), "exact": self.exact}


@dataclass
class DupeGroup:
    modality: str
    members: list[Member]          # the best first
    why_first: str                 # why the first is the one to keep
    exact: bool = False            # every member a byte-for-byte copy of the others

    def as_dict(self) -> dict[str, Any]:
        return {"modality": self.modality, "exact": self.exact, "why_first": self.why_first,
                "members": [m.as_dict() for m in self.members]}


@dataclass
class PairCache:
    """What a lane's earlier run found: the ids it covered, its candidate pairs (i < j, cosine) and the likeness
    of the pairs it confirmed or refused. Item ids are never reused, so a pair's facts never go stale; only pairs
    with an item that has gone are dropped."""

    radius: float
    ids: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    pairs: np.ndarray = field(default_factory=lambda: np.empty((0, 2), np.int64))
    cosines: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    likeness: dict[tuple[int, int], float] = field(default_factory=dict)


def candidate_pairs(ids: np.ndarray, radius: float, cache: PairCache | None,
                    neighbours: Callable[[np.ndarray, float, np.ndarray], Iterable[tuple[int, np.ndarray, np.ndarray]]]
                    ) -> tuple[PairCache, int]:
    """The lane's pairs within `radius`, searching only for items the cache has not seen. `neighbours(query_ids,
    radius, allowed_ids)` yields (query id, hit ids, cosines). Returns the updated cache and how many items were
    searched."""
    ids = np.sort(np.asarray(ids, np.int64))
    if cache is None or cache.radius != radius:
        cache = PairCache(radius)
    keep = np.isin(cache.pairs, ids).all(axis=1) if cache.pairs.size else np.zeros(0, bool)
    pairs, cosines = cache.pairs[keep], cache.cosines[keep]
    new = np.setdiff1d(ids, cache.ids, assume_unique=True)
    found_p, found_c = [pairs], [cosines]
    for q, hit_ids, scores in neighbours(new, radius, ids) if new.size else ():
        other = hit_ids != q
        hit_ids, scores = hit_ids[other], scores[other]
        if hit_ids.size:
            lo, hi = np.minimum(hit_ids, q), np.maximum(hit_ids, q)
            found_p.append(np.stack([lo, hi], axis=1))
            found_c.append(scores.astype(np.float32))
    pairs, cosines = np.concatenate(found_p), np.concatenate(found_c)
    if pairs.size:  # a pair of two new items is found from both ends
        pairs, first = np.unique(pairs, axis=0, return_index=True)
        cosines = cosines[first]
    live = set(map(int, ids))
    likeness = {p: v for p, v in cache.likeness.items() if p[0] in live and p[1] in live}
    return PairCache(radius, ids, pairs.reshape(-1, 2), cosines, likeness), int(new.size)


class _Groups:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def join(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def sets(self) -> list[list[int]]:
        out: dict[int, list[int]] = defaultdict(list)
        for x in self.parent:
            out[self.find(x)].append(x)
        return [sorted(v) for v in out.values() if len(v) > 1]


# Formats that keep every pixel or sample: at the same size a PNG beats the JPEG made from it, a FLAC the MP3.
LOSSLESS = frozenset({"png", "tif", "tiff", "bmp", "ppm", "pgm", "webp", "wav", "flac", "aif", "aiff", "aifc", "w64",
                      "wv", "ape", "caf", "au", "snd"})


def rank_key(modality: str, m: Member) -> tuple:
    """Bigger is better: the picture's pixels, a lossless format, the sound's bytes per second, the file's size,
    then the newest."""
    loc = m.locator
    pixels = int(loc.get("width", 0) or 0) * int(loc.get("height", 0) or 0)
    lossless = m.path.rsplit(".", 1)[-1].lower() in LOSSLESS if "." in m.path else False
    length = float(loc.get("end", 0) or 0) - float(loc.get("start", 0) or 0)
    rate = m.size / length if modality == "audio" and length > 0 else 0.0
    return (pixels, lossless, rate, m.size, m.date or 0.0, -m.item_id)


def why_first(modality: str, best: Member, runner_up: Member) -> str:
    a, b = rank_key(modality, best), rank_key(modality, runner_up)
    reasons = (f"largest picture ({best.locator.get('width')}x{best.locator.get('height')})", "lossless format",
               "highest bitrate", "largest file", "newest")
    return next((why for why, x, y in zip(reasons, a, b) if x != y), "first indexed")


def group_dupes(modality: str, cache: PairCache, members: dict[int, Member],
                sketch: Callable[[int], Any] | None, likeness: Callable[[Any, Any], float] | None,
                threshold: float, copies: Sequence[Sequence[int]] = (),
                cosine: Callable[[int, int], float] | None = None) -> list[DupeGroup]:
    """Groups of confirmed near-duplicates among a lane's candidate pairs (`cache`, updated with the likeness it
    computes). `members[item id]` describes each item; `sketch(item id)` gives its sketch (None: nothing to
    compare, e.g. silence); `copies`: item ids known byte-for-byte equal (their files share a hash); `cosine(a, b)`:
    the cosine of two items that are not a candidate pair (reported only)."""
    cos_of = {(int(a), int(b)): float(c) for (a, b), c in zip(cache.pairs, cache.cosines)}
    sketches: dict[int, Any] = {}

    def sketch_of(i: int) -> Any:
        if i not in sketches:
            try:
                sketches[i] = sketch(i) if sketch is not None else None
            except Exception:  # noqa: BLE001  (a file gone or unreadable since it was indexed: not comparable)
                sketches[i] = None
        return sketches[i]

    exact_pairs = set()
    for group in copies:
        for x in group:
            for y in group:
                if x < y:
                    exact_pairs.add((x, y))

    def alike(a: int, b: int) -> float | None:
        """The pair's likeness, or None where it is not a copy (or either file is the same file)."""
        key = (min(a, b), max(a, b))
        if key in exact_pairs:
            return 1.0
        if members[a].file_id == members[b].file_id:
            return None  # a repeat inside one file (a chorus, silence) is not a copy of the file
        if likeness is None:  # vectors alone decide
            return 1.0 if key in cos_of else None
        if key not in cache.likeness:
            sa, sb = sketch_of(a), sketch_of(b)
            cache.likeness[key] = -1.0 if sa is None or sb is None else float(likeness(sa, sb))
        v = cache.likeness[key]
        return v if v >= threshold else None

    joined = _Groups()
    for key in sorted(exact_pairs):
        if key[0] in members and key[1] in members:
            joined.join(*key)
    for a, b in cos_of:
        if a in members and b in members and alike(a, b) is not None:
            joined.join(a, b)

    groups: list[DupeGroup] = []
    for component in joined.sets():
        rest = sorted(component, key=lambda i: rank_key(modality, members[i]), reverse=True)
        while len(rest) > 1:  # each group is cut around its best member: no chains of small steps
            best, kept, left = rest[0], [rest[0]], []
            files = {members[best].file_id}
            for i in rest[1:]:
                key = (min(best, i), max(best, i))
                # Compared with the best directly, candidate or not: joined through others, its vector may lie
                # outside the radius of the best's (a crop of a re-saved copy) while its content is the same.
                v = alike(best, i) if members[i].file_id not in files else None
                if v is None:
                    left.append(i)  # another window of a file already here, or not a copy of the best
                    continue
                kept.append(i)
                files.add(members[i].file_id)
                m = members[i]
                m.cosine = cos_of[key] if key in cos_of else float(cosine(best, i)) if cosine is not None else 1.0
                m.likeness = v
            if len(kept) > 1:
                head = members[best]
                head.cosine, head.likeness = 1.0, 1.0
                ms = [members[i] for i in kept]
                hashes = [m.hash for m in ms]
                for m in ms:
                    m.exact = m.hash is not None and hashes.count(m.hash) > 1
                groups.append(DupeGroup(modality, ms, why_first(modality, ms[0], ms[1]),
                                        exact=all(m.exact for m in ms) and len(set(hashes)) == 1))
            rest = left
    return _by_files(groups)


def _by_files(groups: list[DupeGroup]) -> list[DupeGroup]:
    """Groups that join the same files (a recording's windows, a video's scenes, a document's pages saved twice)
    become one group of those files, each member counting its items in it."""
    merged: dict[tuple, DupeGroup] = {}
    out: list[DupeGroup] = []
    for g in groups:
        files = tuple(sorted({m.file_id for m in g.members}))
        if len(files) != len(g.members):
            out.append(g)
            continue
        key = (g.modality, files)
        if key not in merged:
            merged[key] = g
            out.append(g)
            continue
        kept = merged[key]
        by_file = {m.file_id: m for m in kept.members}
        for m in g.members:
            k = by_file[m.file_id]
            k.items += 1
            k.cosine, k.likeness = min(k.cosine, m.cosine), min(k.likeness, m.likeness)
            k.exact = k.exact and m.exact
        kept.exact = kept.exact and g.exact
    out.sort(key=lambda g: (-len(g.members), -sum(m.items for m in g.members), g.members[0].path))
    return out
