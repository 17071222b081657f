"""Searching an index: a query encoded in the index's space, one search per result modality, hits merged by
relevance, keyword and hybrid ranking, composed queries and "more like this"."""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from ..errors import DecodeError, ItemNotFoundError, UsageError
from ..index.vectors_stream import unit_rows
from ..modalities import get_modality, item_modality_names
from ..query import (Filters, Query, check_mode, check_sort, make_query, parse_filters, parse_types, result_lanes,
                     sort_hits)
from ..relevance.cutoff import check_cutoff, check_min_relevance, gap_cut
from ..relevance.profile import PROBE_DEPTH

if TYPE_CHECKING:
    from .facade import Engine


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float
    modality: str
    path: str
    id: int
    locator: dict[str, Any]
    text: str | None = None
    relevance: float | None = None  # comparable across queries and modalities (see relevance/); None: too few items
    date: float | None = None       # the file's date: EXIF / tag date, else its mtime (seconds since the epoch)
    file_modality: str | None = None  # its file's (a video's scene is an image item of a video file)
    moments: tuple["Hit", ...] = ()   # with a `video` result type: more moments of the same file, best first
    approximate: bool = False         # its vector came through a migration's bridge, not yet embedded in this space

    @property
    def where(self) -> str:
        """Where in its file the hit sits, as people say it: 'p. 12', '§ Results', '[1:02.5–1:07.0]', 'line 40';
        '' for a whole file."""
        from ..modalities import get_modality

        after, extra = get_modality(self.modality).describe(self.locator, self.text)
        after = after.strip()
        if after.startswith(":"):
            return f"line {after[1:]}"
        return after or (extra.strip() if self.text is None else "")

    @property
    def start(self) -> float | None:
        """Seconds into its file where the hit begins (a scene, a sound window, a subtitle), else None."""
        return self._time("start")

    @property
    def end(self) -> float | None:
        return self._time("end")

    def _time(self, edge: str) -> float | None:
        # A passage's "start"/"end" count characters; its times, if any, are "t_start"/"t_end".
        v = self.locator.get(f"t_{edge}") if self.modality == "text" else self.locator.get(edge)
        return None if v is None or isinstance(v, bool) else float(v)

    def to_dict(self) -> dict[str, Any]:
        out = {"rank": self.rank, "score": round(self.score, 6),
               "relevance": None if self.relevance is None else round(self.relevance, 4),
               "modality": self.modality, "path": self.path, "id": self.id, "locator": self.locator, "text": self.text,
               "where": self.where, "start": self.start, "end": self.end, "date": None if self.date is None else
               datetime.fromtimestamp(self.date, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        if self.file_modality is not None and self.file_modality != self.modality:
            out["file_modality"] = self.file_modality
        if self.moments:
            out["moments"] = [m.to_dict() for m in self.moments]
        if self.approximate:
            out["approximate"] = True
        return out


GROUP_FETCH = 8   # a search grouped by file looks at this many candidates per file asked for
MAX_MOMENTS = 5   # more moments shown under a file's best one


def group_moments(hits: list[Hit], containers: set[str], k: int) -> list[Hit]:
    """Hits of container files (videos) grouped by file: the best moment first, the next ones under it; other
    hits stay as they are; the first k, ranked again."""
    from dataclasses import replace

    tops: list[Hit] = []
    more: dict[str, list[Hit]] = {}
    for h in hits:
        if h.file_modality in containers:
            if h.path in more:
                if len(more[h.path]) < MAX_MOMENTS:
                    more[h.path].append(h)
                continue
            more[h.path] = []
        tops.append(h)
    tops = tops[:k]
    return [replace(h, rank=i + 1, moments=tuple(replace(m, rank=i + 1) for m in more.get(h.path, ())))
            if h.file_modality in containers else replace(h, rank=i + 1) for i, h in enumerate(tops)]


KEYWORD_FLOOR = 0.5  # keyword candidates need a BM25 of at least this share of the best match's
RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al. 2009): 1 / (60 + rank) per ranking


def _fuse(vector_order: list[int], keyword_ids: list[int], found: list[tuple[float, int, str]], k: int) -> list[int]:
    """Candidates (indices into `found`) by reciprocal rank fusion of the vector and keyword rankings, the top
    half of k of each ranking first (so that neither can push the other's best out of the top k); with no
    vector ranking, the keyword ranking alone."""
    pos = {i: j for j, (_, i, _) in enumerate(found)}
    keyword_order = [pos[i] for i in keyword_ids if i in pos]
    score: dict[int, float] = {}
    for ranking in (vector_order, keyword_order):
        for rank, j in enumerate(ranking):
            score[j] = score.get(j, 0.0) + 1.0 / (RRF_K + rank + 1)
    fused = sorted(score, key=lambda j: -score[j])
    half = (k + 1) // 2
    first = set(vector_order[:half]) | set(keyword_order[:half])
    return [j for j in fused if j in first] + [j for j in fused if j not in first]


def _filters(filters: Filters | dict[str, Any] | None) -> Filters | None:
    if filters is None or isinstance(filters, Filters):
        return filters
    if not isinstance(filters, dict):
        raise UsageError(f"filters must be a Filters or a dict, got {type(filters).__name__}")
    unknown = set(filters) - {"paths", "after", "before", "min_size", "max_size", "exts"}
    if unknown:
        raise UsageError(f"unknown filter {sorted(unknown)[0]!r}; valid: paths, after, before, min_size, max_size, exts")
    return parse_filters(**filters)


class Searcher:
    """The searches of one engine (read-only: a searcher never takes the writer's lock)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._filters_state: Any = None
        self._filters: dict[Any, Any] = {}

    def encode_query(self, q: Query) -> np.ndarray:
        self.engine.follow_switch()
        m = get_modality(q.modality)
        enc = self.engine.query_encoder(m.name)
        if enc is None:
            raise UsageError(f"space {self.engine.spec.name!r} has no {m.name} tower, so it cannot take an "
                             f"{m.name} query")
        value = _expand(q.value) if m.file_query else q.value
        try:
            return m.encode_query(enc, value)
        except DecodeError as e:
            raise UsageError(f"cannot use the {m.name} query: {e}") from None

    def search(self, text: str | None = None, *, image: Any = None, audio: Any = None, k: int = 10,
               types: Iterable[str] | str | None = None, min_relevance: float | None = None,
               cutoff: str | None = None, filters: Filters | dict[str, Any] | None = None, sort: str | None = None,
               mode: str | None = None, **others: Any) -> list[Hit]:
        """`Engine.search`: encode the query in the index's space, then `search_vector`."""
        min_relevance, cutoff = check_min_relevance(min_relevance), check_cutoff(cutoff)
        filters, sort, mode = _filters(filters), check_sort(sort), check_mode(mode)
        q = make_query(text=text, image=image, audio=audio, k=k, types=types, **others)
        if mode != "vector" and q.modality != "text":
            raise UsageError(f"{mode} search needs a text query (words to match), not {q.modality}")
        vec = self.encode_query(q)
        return self.search_vector(vec, k=q.k, types=q.types, query_modality=q.modality, min_relevance=min_relevance,
                                  cutoff=cutoff, filters=filters, sort=sort,
                                  keywords=q.value if mode != "vector" else None, mode=mode)

    def search_vector(self, vec: np.ndarray, *, k: int = 10, types: Iterable[str] | None = None,
                      query_modality: str | None = None, min_relevance: float | None = None,
                      cutoff: str | None = None, filters: Filters | dict[str, Any] | None = None,
                      sort: str | None = None, keywords: str | None = None, mode: str | None = None) -> list[Hit]:
        """`Engine.search_vector`: one search per result modality, merged by relevance (or fused with BM25)."""
        min_relevance, cutoff = check_min_relevance(min_relevance), check_cutoff(cutoff)
        filters, sort, mode = _filters(filters), check_sort(sort), check_mode(mode)
        if mode != "vector" and not (keywords or "").strip():
            raise UsageError(f"{mode} search needs the query's text (keywords)")
        vec = np.asarray(vec, np.float32)
        with self.engine._lock:
            if not self.engine.store.holds_lock:  # another process may have committed since
                self.engine.store.refresh_vectors(self.engine.dim)
            cat = self.engine.store.catalog
            lanes = result_lanes(tuple(types) if types is not None else item_modality_names())
            grouped = any(t != m for t, m in lanes)
            # Over-fetch a little: ids whose catalog rows were removed since the vectors were saved are dropped;
            # grouped by file, enough more that k files are found with their moments; and at least the depth at
            # which relevance reads the query's ranking for a group that stands apart.
            want = k * GROUP_FETCH if grouped else k
            fetch = min(max(want + 16, PROBE_DEPTH + 1), max(1, self.engine.store.vectors.ntotal))
            found: list[tuple[float, int, str]] = []  # (cosine, id, item modality): one search per lane
            allowed = {lane: self._filter(lane, filters) for lane in lanes}
            if mode != "keyword":
                seen_ids: set[int] = set()
                for lane in lanes:
                    if allowed[lane].empty:
                        continue
                    scores, ids = self.engine.store.vectors.search(vec[None, :], fetch, allowed=allowed[lane])
                    for sc, i in zip(scores[0], ids[0]):
                        if i >= 0 and int(i) not in seen_ids:  # a video's scene is an image too
                            seen_ids.add(int(i))
                            found.append((float(sc), int(i), lane[1]))
            if mode != "vector":  # keyword candidates the vector search did not bring, scored by their cosine
                matched = self._keyword_candidates(keywords, allowed, max(4 * fetch, 64))
                seen = {i for _, i, _ in found}
                extra = [(i, m) for i, m in matched if i not in seen]
                if extra:
                    vecs = self.engine.store.vectors.reconstruct(np.array([i for i, _ in extra], np.int64))
                    found += [(float(v @ vec), i, m) for (i, m), v in zip(extra, vecs)]
            rel = self.engine.relevance.relevance(vec, query_modality, [m for _, _, m in found],
                                           np.array([s for s, _, _ in found])) if found else np.empty(0)
            by_cosine = np.isnan(rel).any()
            order = sorted(range(len(found)), key=lambda j: (-found[j][0],) if by_cosine else (-rel[j], -found[j][0]))
            if mode != "vector":
                order = _fuse(order if mode == "hybrid" else [], [i for i, _ in matched], found, want)
            order = order[:fetch]
            rows = cat.items([found[j][1] for j in order[:want]])  # the top ones; more only where rows vanished
            if len(rows) < min(want, len(order)):
                rows.update(cat.items([found[j][1] for j in order[want:]]))
            order = [j for j in order if found[j][1] in rows][:want]
        found, rel = [found[j][:2] for j in order], rel[order]
        keep = np.ones(len(found), bool)
        if min_relevance is not None:
            keep &= np.nan_to_num(rel, nan=-1.0) >= min_relevance
        if cutoff == "gap" and keep.any():
            kept = np.flatnonzero(keep)
            order = kept[np.argsort(-np.nan_to_num(rel[kept], nan=-1.0), kind="stable")]
            keep[:] = False
            keep[order[:gap_cut(np.nan_to_num(rel[order], nan=0.0))]] = True
        hits: list[Hit] = []
        for (s, i), r_, ok in zip(found, rel, keep):
            if not ok:
                continue
            r = rows[i]
            hits.append(Hit(rank=len(hits) + 1, score=s, modality=r.modality, path=r.path, id=i,
                            locator=r.locator, text=r.text, relevance=None if np.isnan(r_) else float(r_), date=r.date,
                            file_modality=r.file_modality, approximate=r.approximate))
        if grouped:
            hits = group_moments(hits, {t for t, m in lanes if t != m}, k)
        return sort_hits(hits, sort)

    def search_parts(self, parts: Iterable[tuple[float, str, Any]], *, k: int = 10,
                     types: Iterable[str] | str | None = None, min_relevance: float | None = None,
                     cutoff: str | None = None, filters: Filters | dict[str, Any] | None = None,
                     sort: str | None = None, mode: str | None = None) -> list[Hit]:
        """`Engine.search_parts`: the parts' unit vectors, weighted, summed, normalised and searched."""
        if check_mode(mode) != "vector":
            raise UsageError(f"{mode} search takes one plain text query, not a composed one (--add, --subtract, "
                             f"parts): compose in vector mode, or search the words alone")
        parts = list(parts)
        if not parts:
            raise UsageError("give at least one query part")
        vecs, weights, mods = [], [], []
        for part in parts:
            if not (isinstance(part, (tuple, list)) and len(part) == 3):
                raise UsageError(f"a query part is (weight, modality, value), got {part!r}")
            w, m, value = part
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not np.isfinite(w) or w == 0:
                raise UsageError(f"a part's weight must be a non-zero number, got {w!r}")
            vecs.append(self._part_vector(m, value))
            weights.append(float(w))
            mods.append(self.engine.item(int(value)).modality if m == "item" else m)
        combined = np.sum([w * v for w, v in zip(weights, vecs)], axis=0)
        norm = float(np.linalg.norm(combined))
        if norm < 1e-6:
            raise UsageError("the query parts cancel out: nothing is left to search for")
        lead = mods[int(np.argmax(weights))]
        q = make_query(text="x", k=k, types=types)  # validates k and types
        result_types = q.types if types is not None else parse_types(None, lead)  # default: the others of the lead
        return self.search_vector(combined / norm, k=q.k, types=result_types, query_modality=lead,
                                  min_relevance=min_relevance, cutoff=cutoff, filters=filters, sort=sort)

    def search_like(self, item_id: int, *, k: int = 10, types: Iterable[str] | str | None = None,
                    min_relevance: float | None = None, cutoff: str | None = None,
                    filters: Filters | dict[str, Any] | None = None, sort: str | None = None) -> list[Hit]:
        """`Engine.search_like`: search with an indexed item's own vector."""
        row = self.engine.item(item_id)
        if row is None:
            raise ItemNotFoundError(f"no indexed item with id {item_id}")
        q = make_query(text="x", k=k, types=types)  # validates k and types
        with self.engine._lock:
            self.engine.store.refresh_vectors(self.engine.dim)
            vec = unit_rows(self.engine.store.vectors.reconstruct(np.array([row.id]))[0])
        return self.search_vector(vec, k=q.k, types=q.types if types is not None else None, query_modality=row.modality,
                                  min_relevance=min_relevance, cutoff=cutoff, filters=filters, sort=sort)

    def _filter(self, lane: tuple[str, str], filters: Filters | None = None):
        """The ids of a lane's items (result type, item modality) whose files pass `filters`, as a search
        filter, cached until the next commit; the last 64 filters are kept."""
        from ..index.vector_index import IdFilter

        # The catalog's generation too: a commit that only moves files changes no vector, but path filters
        # (and dates) must see it.
        store = self.engine.store
        state = (store.catalog.get_meta("generation"), store.vectors_stamp, store.vectors.ntotal, id(store.vectors))
        if self._filters_state != state:
            self._filters_state, self._filters = state, {}
        key = (lane, filters if filters is not None and not filters.empty else None)
        if key not in self._filters:
            if len(self._filters) >= 64:
                self._filters.pop(next(iter(self._filters)))
            kind, modality = lane
            ids = store.catalog.lane_item_ids(modality, kind if kind != modality else None, key[1])
            self._filters[key] = IdFilter(ids)
        return self._filters[key]

    def _keyword_candidates(self, keywords: str, allowed: dict[str, Any], limit: int) -> list[tuple[int, str]]:
        """(id, modality) of the items matching the keywords, best BM25 first, within the search's filters."""
        out = []
        matches = self.engine.store.catalog.keyword_search(keywords, limit)
        # Items that match only the query's common words (BM25 far below the best match) carry no keyword
        # evidence; left in, they outvoted the vector ranking in the fusion (R@10 of meaning queries 1.00 -> 0.99).
        floor = KEYWORD_FLOOR * matches[0][1] if matches else 0.0
        for i, bm25 in matches:
            if bm25 < floor:
                break
            for (_, m), filt in allowed.items():
                byte = i >> 3
                if byte < filt.n and (filt.bits[byte] >> (i & 7)) & 1:
                    out.append((i, m))
                    break
        return out

    def _part_vector(self, modality: str, value: Any) -> np.ndarray:
        if modality == "item":
            row = self.engine.item(int(value)) if str(value).lstrip("-").isdigit() else None
            if row is None:
                raise ItemNotFoundError(f"no indexed item with id {value}")
            with self.engine._lock:
                self.engine.store.refresh_vectors(self.engine.dim)
                vec = self.engine.store.vectors.reconstruct(np.array([row.id]))[0]
            return unit_rows(vec)
        if modality not in item_modality_names():
            raise UsageError(f"unknown query part modality {modality!r}; valid: item, {', '.join(item_modality_names())}")
        return self.encode_query(make_query(**{modality: value}))


def _expand(v: Any) -> Any:
    return os.path.expanduser(os.fspath(v)) if isinstance(v, (str, os.PathLike)) else v
