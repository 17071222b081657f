"""The one facade the CLI, the server and Python users call."""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from .catalog import IndexedContents
from .encoders.image import max_pixels
from .errors import (DecodeError, IndexNotFoundError, ItemNotFoundError, MissingWeightsError, SpaceMismatchError,
                     UsageError)
from .ingest.commit import Committer
from .options import ItemOptions, RayOptions
from .ingest.embed import EmbeddedFile
from .ingest.indexer import Indexer, IndexReport
from .ingest.plan import Plan
from .ingest.walk import normalise_roots, under
from .modalities import get_modality, modality_names
from .query import Filters, Query, check_mode, check_sort, make_query, parse_filters, parse_types, sort_hits
from .space.runtime import Space, space_identity
from .space.towers import JPEG_DRAFT, JPEG_DRAFT_BEFORE
from .space.backend import parse_backend
from .space.device import parse_device
from .space.precision import TOWERS, describe, parse_precision
from .space.registry import resolve_model_arg
from .space.spec import SpaceSpec, fingerprint_of
from .relevance.cutoff import check_cutoff, check_min_relevance, gap_cut
from .relevance.scorer import RelevanceScorer
from .index.vectors_stream import CHUNK, VectorChunk, unit_rows
from .store import Store

STAGING_DIR = "staging"  # under the index: shards embedded on Ray, kept until committed
DEFAULT_SPACE = os.environ.get("MMR_MODEL", "vit-b-32-openai+wav2clip")


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

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "score": round(self.score, 6),
                "relevance": None if self.relevance is None else round(self.relevance, 4),
                "modality": self.modality, "path": self.path, "id": self.id, "locator": self.locator, "text": self.text,
                "date": None if self.date is None else
                datetime.fromtimestamp(self.date, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


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


def _spec_of(model: str | SpaceSpec) -> SpaceSpec:
    return model if isinstance(model, SpaceSpec) else resolve_model_arg(model)


class Engine:
    """An index folder plus the space it lives in.

    ``Engine(path, model=...)`` creates the index when the folder holds none (``model`` defaults to
    the default space); an existing index remembers its space, and a different ``model`` is refused.
    ``readonly=True`` opens an existing index for searching only, never taking the writer's lock.
    ``precision`` (auto, fp32, bf16, int8 or tower=format pairs, see `space.precision`) is chosen when the
    index is created (default: auto, by what the CPU does natively) and remembered: an existing
    index always encodes in its own, and an explicit different one is refused. ``backend`` (auto, torch,
    onnx; None: ``MMR_BACKEND``) picks the runtime of the towers, see `space.backend`; it is not remembered.
    ``device`` (auto, cpu, cuda, cuda:N; `space.device.parse_device`) is where the towers compute; a new
    index's ``auto`` precision follows it (fp16 image and audio towers on a GPU), an existing one keeps its own.
    """

    def __init__(self, path: str | os.PathLike, model: str | SpaceSpec | None = None, *, readonly: bool = False,
                 device: str = "cpu", precision: str | dict[str, str] | None = None,
                 backend: str | None = None) -> None:
        self.path = Path(os.path.expanduser(os.fspath(path))).resolve()
        self.device = device = parse_device(device)  # auto: a usable GPU if there is one (bulk work), else the CPU
        self.backend = parse_backend(backend)
        self._space: Space | None = None
        self._relevance: RelevanceScorer | None = None
        self._lock = threading.RLock()
        exists = (self.path / "catalog.sqlite").is_file()
        if not exists:
            if readonly:
                raise IndexNotFoundError(
                    f"{self.path} is not an mmretrieval index; create one with `mmr index FOLDER --index {self.path}`")
            if self.path.exists() and not self.path.is_dir():
                raise UsageError(f"{self.path} is a file, not an index folder")
            if self.path.is_dir() and any(self.path.iterdir()):
                raise IndexNotFoundError(
                    f"{self.path} is a non-empty folder that holds no mmretrieval index; "
                    f"choose an empty or new folder for the index")
            spec = _spec_of(model or DEFAULT_SPACE)
            self.jpeg_draft = JPEG_DRAFT
            space = Space(spec, device=device, precision=precision,  # weights must exist before we create anything
                          backend=self.backend, jpeg_draft=self.jpeg_draft)
            dict(space.encoders)  # and every tower must load: one that cannot is an error before the index exists
            self.precision = space.precision  # auto resolved by the space (which knows what its towers can run)
            self.store = Store(self.path, create=True)
            self.store.init_space(spec, space.fingerprint, space.dim, precision=describe(self.precision),
                                  jpeg_draft=self.jpeg_draft)
            self._space = space
        else:
            self.store = Store(self.path, readonly=readonly)
            rec = self.store.space_record() or {}
            self.precision = parse_precision(rec.get("precision", "fp32"), device)  # older indexes: fp32
            self.jpeg_draft = int(rec.get("jpeg_draft", JPEG_DRAFT_BEFORE))
            if precision is not None:
                self._check_precision(parse_precision(precision, device))
            if model is not None:
                spec = _spec_of(model)
                try:
                    fp = fingerprint_of(space_identity(spec, precision=self.precision, jpeg_draft=self.jpeg_draft))
                except MissingWeightsError:
                    stored = self.store.stored_spec()
                    if stored is not None and (stored.clip, stored.audio) == (spec.clip, spec.audio):
                        raise
                    fp = "unknown: its weights are missing"  # a different space either way
                self.store.check_space(spec.name, fp, spec.metric)
        self.readonly = readonly
        rec = self.store.space_record()
        if rec is None:
            raise IndexNotFoundError(f"{self.path} has a catalog but no space record; it is not a usable index")
        self.dim = int(rec["dim"])
        self.store.load_vectors(self.dim)

    # ----------------------------------------------------------------- space
    def _check_precision(self, wanted: dict[str, str]) -> None:
        spec = self.store.stored_spec()
        if any(wanted[t] != self.precision[t] for t in (spec.modalities if spec else TOWERS)):
            raise SpaceMismatchError(
                f"the index at {self.path} encodes with precision {describe(self.precision)}, not "
                f"{describe(wanted)}: its vectors were made that way and queries must match them. "
                f"Omit --precision to use the index's own, or build a new index.")

    @property
    def spec(self) -> SpaceSpec:
        spec = self.store.stored_spec()
        assert spec is not None
        return spec

    @property
    def space(self) -> Space:
        """The loaded encoders; loaded on first use and checked against the index's fingerprint."""
        with self._lock:
            if self._space is None:
                space = Space(self.spec, device=self.device, precision=self.precision, backend=self.backend,
                              jpeg_draft=self.jpeg_draft)
                self.store.check_space(space.spec.name, space.fingerprint, space.spec.metric)
                self._space = space
            return self._space

    def prepare(self) -> None:
        """Load the space and every tower, and open their runtimes now, so that the first query does not wait for
        them (a server calls it in the background as it starts)."""
        for encoder in self.space.encoders.values():
            encoder.warm_up()

    # ----------------------------------------------------------------- indexing
    def index(self, paths: Iterable[str | os.PathLike], *, batch_size: int = 32, workers: int | None = None,
              progress: bool = False, checkpoint_seconds: float = 30.0, pool_audio: bool | None = None,
              index_type: str | None = None, memory_budget: int | None = None,
              ray: RayOptions | None = None) -> IndexReport:
        """Index (incrementally) every supported file under `paths`.

        Long audio becomes one item per window (start/end seconds); `pool_audio` makes it one item per
        file instead (the mean of its window vectors). How files are cut into items (`options.ItemOptions`) is
        the index's: recorded the first time, then used by every run (None: the recorded); another value once
        the index holds items it would cut differently is refused. `index_type` (flat, hnsw, ivf-fp16, ivf-flat, ivf-sq8,
        ivf-pq, or auto) and `memory_budget` (bytes) are remembered by the index; with neither, the type follows the
        collection's size (`index.choose.choose_index`), converting without re-embedding when it changes.
        `ray`: embed on a Ray cluster (`ingest.distributed`); planning and the commit stay here, and files
        embedded by an interrupted run (staged under the index's `staging/`) are not embedded again."""
        self._writable()
        paths = list(paths) if not isinstance(paths, (str, os.PathLike)) else [paths]
        if not paths:
            raise UsageError("give at least one file or folder to index")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise UsageError(f"batch_size must be a positive integer, got {batch_size!r}")
        for p in paths:
            if not os.path.exists(os.path.expanduser(os.fspath(p))):
                raise UsageError(f"nothing to index at {p}: no such file or folder")
        max_pixels()  # a bad $MMR_MAX_PIXELS is the user's setting, not every image's problem
        roots = [r for r in normalise_roots(paths) if not under(r, [str(self.path)])]
        with self._lock:
            self.store.acquire_lock()
            try:
                report = IndexReport()
                report.repaired = self.store.reconcile()
                items = self._item_options(pool_audio)
                indexer = Indexer(self.store, self.space, batch_size=batch_size,
                                  workers=workers or None,
                                  checkpoint_seconds=checkpoint_seconds, progress=progress, options=items)
                indexer.report.repaired = report.repaired
                self._set_index_policy(index_type, memory_budget)
                embed, staging = None, None
                if ray is not None:
                    embed, staging = self._ray_embedder(ray, batch_size, workers or None, items)
                result = indexer.run(roots, embed=embed.stream if embed else None)
                if embed is not None:
                    result.distributed = embed.summary
                    if not ray.keep_shards:
                        staging.clear()  # committed: the staged copies are of no further use
                self._fit_index_type()
                self.relevance.store_profile_if_stale()
                return result
            finally:
                self.store.release_lock()

    def _ray_embedder(self, options: RayOptions, batch_size: int, workers: int | None, items: ItemOptions):
        from .ingest.distributed import RayEmbedder, _ray
        from .ingest.staging import Staging

        _ray()  # Ray Data is installed, or the user learns what to install before any work
        self.space  # noqa: B018  (the weights load, and are checked, here before any node loads them)
        staging = Staging(self.path / STAGING_DIR, self.store.space_record(), items)
        return RayEmbedder(self.spec.to_dict(), self.precision, staging, options, jpeg_draft=self.jpeg_draft,
                           batch_size=batch_size,
                           workers=workers, items=items), staging

    def _item_options(self, pool_audio: bool | None) -> ItemOptions:
        """The index's item options, with this run's request: recorded the first time one is given (an index made
        before they were recorded: read from its items); a change once items were cut the other way is refused."""
        cat = self.store.catalog
        raw = cat.get_meta(ItemOptions.META_KEY)
        if raw is not None:
            recorded = ItemOptions.from_dict(json.loads(raw))
        else:
            recorded = ItemOptions(audio_pooled=cat.has_pooled_audio())
        wanted = recorded if pool_audio is None else replace(recorded, audio_pooled=bool(pool_audio))
        changed = recorded.differences(wanted)
        counts = cat.counts()["items"]
        if changed and counts.get("audio"):
            now = "one item per file (pooled windows)" if recorded.audio_pooled else "one item per window"
            raise UsageError(f"this index cuts audio into {now}, and holds {counts['audio']} audio item(s) cut that "
                             f"way; {'--no-pool-audio' if recorded.audio_pooled else '--pool-audio'} would mix both. "
                             f"Omit it, index into another folder (--index), or `mmr remove` the audio first")
        if raw is None or changed:
            with cat.transaction():
                cat.set_meta(ItemOptions.META_KEY, json.dumps(wanted.to_dict()))
        return wanted

    def _set_index_policy(self, index_type: str | None, memory_budget: int | None) -> None:
        from .index.choose import KINDS

        if index_type is not None and index_type != "auto" and index_type not in KINDS:
            raise UsageError(f"unknown index type {index_type!r}; valid: auto, {', '.join(KINDS)}")
        if memory_budget is not None and memory_budget <= 0:
            raise UsageError("the memory budget must be a positive number of bytes")
        if memory_budget is not None:  # refuse a budget that cannot hold even what is indexed now
            from .index.choose import choose_index

            choose_index(self.store.vectors.ntotal, self.dim, memory_budget,
                         None if index_type in (None, "auto") else index_type)
        cat = self.store.catalog
        with cat.transaction():
            if index_type is not None:
                cat.set_meta("index_type", index_type)
            if memory_budget is not None:
                cat.set_meta("memory_budget", str(memory_budget))

    def _fit_index_type(self) -> None:
        """Convert the vector index when the policy or the collection's size calls for another type."""
        from .index.build import convert
        from .index.choose import choose_index, estimate_bytes, nlist_for

        cat, vectors = self.store.catalog, self.store.vectors
        pinned = cat.get_meta("index_type")
        budget = cat.get_meta("memory_budget")
        n = vectors.ntotal
        choice = choose_index(n, self.dim, int(budget) if budget else None,
                              None if pinned in (None, "auto") else pinned)
        current = vectors.kind
        ivf = vectors.ivf
        stale = ivf is not None and choice.needs_training and nlist_for(n) >= 4 * ivf.nlist
        # An ivf-flat index built before ivf-fp16 became the default stays as it is (its scores are exact) while it
        # fits the budget, until its lists go stale and it is rebuilt anyway.
        same = choice.kind == current or (
            pinned in (None, "auto") and (choice.kind, current) == ("ivf-fp16", "ivf-flat")
            and (not budget or estimate_bytes("ivf-flat", n, self.dim) <= int(budget)))
        if (same and not stale) or (choice.needs_training and n < max(choice.nlist, 1)):
            return
        self.store.vectors = convert(vectors, choice)
        self.store.begin()
        self.store.checkpoint()

    def add_embeddings(self, files: Iterable[EmbeddedFile], *, checkpoint_seconds: float = 30.0) -> IndexReport:
        """Commit files embedded elsewhere: by `ingest.embed` in another process or on another machine
        (`run_embed_task`), with this index's space. Each file's vectors must come from that space (same
        fingerprint: checked) and be L2-normalised float32, one per item. A file already in the index is
        replaced, as `index` does with a changed file; files are not swept (nothing here walks folders)."""
        self._writable()
        files = list(files)
        for f in files:
            _check_embedded(f, self.dim)
        fingerprint = self.store.space_record()["fingerprint"]
        with self._lock:
            self.store.acquire_lock()
            try:
                report = IndexReport()
                report.repaired = self.store.reconcile()
                t0 = last = time.monotonic()
                cat = self.store.catalog
                plan = Plan(roots=[], present_by_hash=IndexedContents(cat))  # looked up per hash: no scan
                committer = Committer(self.store, plan, fingerprint, report)
                self.store.begin()
                try:
                    for f in files:
                        committer.apply(f)
                        if time.monotonic() - last > checkpoint_seconds:
                            committer.flush()
                            self.store.checkpoint()
                            self.store.begin()
                            last = time.monotonic()
                    committer.flush()
                    self.store.checkpoint()
                    cat.commit()
                except BaseException:
                    cat.rollback()
                    raise
                self._fit_index_type()
                self.relevance.store_profile_if_stale()
                report.seconds = time.monotonic() - t0
                return report
            finally:
                self.store.release_lock()

    def remove(self, paths: Iterable[str | os.PathLike]) -> int:
        """Forget every indexed file under `paths` (files stay on disk). Returns files removed."""
        self._writable()
        paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        roots = normalise_roots(paths)
        with self._lock:
            self.store.acquire_lock()
            try:
                self.store.reconcile()
                self.store.begin()
                rows = list(self.store.catalog.files(under=roots).values())
                ids = [self.store.catalog.delete_file(r.id) for r in rows]
                if ids:  # one removal: on IVF and HNSW each removal rebuilds the structure
                    self.store.vectors.remove(np.concatenate(ids))
                self.store.checkpoint()
                self.relevance.store_profile_if_stale()
                return len(rows)
            finally:
                self.store.release_lock()

    def compact(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Write the vectors as one base file, merging the delta segments. Returns the storage before and after
        (`Store.segment_stats`). Checkpoints do this by themselves once the deltas outgrow a share of the base."""
        self._writable()
        with self._lock:
            self.store.acquire_lock()
            try:
                before = self.store.segment_stats()
                self.store.begin()
                self.store.checkpoint(compact=True)
                return before, self.store.segment_stats()
            finally:
                self.store.release_lock()

    def calibrate(self, pairs_file: str | os.PathLike, *, k: int = 10) -> dict[str, Any]:
        """Fit calibrated relevance on labelled pairs (JSONL/CSV: image or audio, caption, label) and store it in
        the index: per pair of modalities, P(relevant | null z-score) over the top-k hits of every query."""
        from .relevance.calibration import MIN_EACH, Calibration, fit_logistic
        from .relevance.pairs import encode_pairs, top_hits
        from .train.pairs import read_pairs

        self._writable()
        pairs = read_pairs(pairs_file)
        ps = encode_pairs(self.space, pairs)
        cal = Calibration(self.space.fingerprint, source=str(Path(pairs_file).expanduser().resolve()))
        left_out: dict[str, str] = {}
        for qm, rm in ps.pairs_of_modalities():
            obs = top_hits(ps, qm, rm, k=k)
            pos = int(obs.relevant.sum())
            neg = int(obs.relevant.size - pos)
            if min(pos, neg) < MIN_EACH:
                left_out[f"{qm}->{rm}"] = (f"{pos} relevant and {neg} irrelevant hits; at least {MIN_EACH} of each are "
                                           f"needed (uncalibrated relevance is used)")
                continue
            cal.pairs[f"{qm}->{rm}"] = fit_logistic(obs.z, obs.scores, obs.relevant)
        if not cal.pairs:
            raise UsageError(f"{pairs_file}: no pair of modalities has enough relevant and irrelevant hits to fit "
                             f"({'; '.join(f'{k}: {v}' for k, v in left_out.items())})")
        with self._lock:
            self.store.acquire_lock()
            try:
                self.relevance.save_calibration(cal)
            finally:
                self.store.release_lock()
        return {**cal.to_dict(), "left_out": left_out, "labelled": ps.labelled,
                "skipped_files": [{"path": p, "reason": r} for p, r in ps.skipped]}

    def _writable(self) -> None:
        if self.readonly:
            raise UsageError("this engine was opened read-only")

    # ----------------------------------------------------------------- search
    def encode_query(self, q: Query) -> np.ndarray:
        m = get_modality(q.modality)
        space = self.space
        enc = m.encoder(space)
        if enc is None:
            raise UsageError(f"space {space.spec.name!r} has no {m.name} tower, so it cannot take an {m.name} query")
        value = _expand(q.value) if m.file_query else q.value
        try:
            return m.encode_query(enc, value)
        except DecodeError as e:
            raise UsageError(f"cannot use the {m.name} query: {e}") from None

    def search(self, text: str | None = None, *, image: Any = None, audio: Any = None, k: int = 10,
               types: Iterable[str] | str | None = None, min_relevance: float | None = None,
               cutoff: str | None = None, filters: Filters | dict[str, Any] | None = None, sort: str | None = None,
               mode: str | None = None, **others: Any) -> list[Hit]:
        """Search by text, an image (path, bytes, PIL image), audio (path, (array, sr)), or a value of another
        registered modality given by its name (``vector=...``); best first. `min_relevance` (0..1) keeps only
        hits at or above that relevance (possibly none); `cutoff="gap"` keeps the hits before the largest
        drop in relevance, when one stands out. `filters` (a `Filters`, or a dict of `parse_filters` arguments:
        paths, after, before, min_size, max_size, exts) restricts the files; `sort` = relevance (default),
        date (newest first) or path orders the hits that pass. `mode`: vector (default), keyword (BM25 over
        passages, file and folder names and tags) or hybrid (both rankings fused); keyword and hybrid take a text
        query."""
        min_relevance, cutoff = check_min_relevance(min_relevance), check_cutoff(cutoff)
        filters, sort, mode = _filters(filters), check_sort(sort), check_mode(mode)
        q = make_query(text=text, image=image, audio=audio, k=k, types=types, **others)
        if mode != "vector" and q.modality != "text":
            raise UsageError(f"{mode} search needs a text query (words to match), not {q.modality}")
        vec = self.encode_query(q)
        return self.search_vector(vec, k=q.k, types=q.types, query_modality=q.modality, min_relevance=min_relevance,
                                  cutoff=cutoff, filters=filters, sort=sort,
                                  keywords=q.value if mode != "vector" else None, mode=mode)

    @property
    def relevance(self) -> RelevanceScorer:
        if self._relevance is None:
            rec = self.store.space_record() or {}
            self._relevance = RelevanceScorer(self.store, rec.get("fingerprint", ""))
        return self._relevance

    def _filter(self, types: tuple[str, ...], filters: Filters | None = None):
        """The ids of these modalities (whose files pass `filters`) as a search filter, cached until the next
        commit; the last 64 filters are kept."""
        from .index.vector_index import IdFilter

        # The catalog's generation too: a commit that only moves files changes no vector, but path filters
        # (and dates) must see it.
        state = (self.store.catalog.get_meta("generation"), self.store.vectors_stamp, self.store.vectors.ntotal,
                 id(self.store.vectors))
        if self.__dict__.get("_filters_state") != state:
            self._filters_state, self._filters = state, {}
        key = (tuple(sorted(types)), filters if filters is not None and not filters.empty else None)
        if key not in self._filters:
            if len(self._filters) >= 64:
                self._filters.pop(next(iter(self._filters)))
            ids = self.store.catalog.item_ids(types) if key[1] is None else \
                self.store.catalog.item_ids_where(types, key[1])
            self._filters[key] = IdFilter(ids)
        return self._filters[key]

    def search_vector(self, vec: np.ndarray, *, k: int = 10, types: Iterable[str] | None = None,
                      query_modality: str | None = None, min_relevance: float | None = None,
                      cutoff: str | None = None, filters: Filters | dict[str, Any] | None = None,
                      sort: str | None = None, keywords: str | None = None, mode: str | None = None) -> list[Hit]:
        """Search with a query vector; `query_modality` (the tower that made it) selects the relevance profile
        and calibration of each (query modality -> hit modality) pair.

        With several result modalities, each is searched for its own top k and the hits are merged by
        relevance (cosines of different modality pairs live on different scales: merging by cosine let one
        modality crowd out the others); where relevance is unknown (fewer than 8 items of a modality), by cosine.
        `mode` keyword ranks the items whose words match `keywords` by BM25; hybrid fuses that ranking with the
        vector ranking (reciprocal rank fusion)."""
        min_relevance, cutoff = check_min_relevance(min_relevance), check_cutoff(cutoff)
        filters, sort, mode = _filters(filters), check_sort(sort), check_mode(mode)
        if mode != "vector" and not (keywords or "").strip():
            raise UsageError(f"{mode} search needs the query's text (keywords)")
        vec = np.asarray(vec, np.float32)
        with self._lock:
            if not self.store.holds_lock:  # another process may have committed since
                self.store.refresh_vectors(self.dim)
            cat = self.store.catalog
            mods = tuple(types) if types is not None else tuple(modality_names())
            # Over-fetch a little: ids whose catalog rows were removed since the vectors were saved are dropped.
            fetch = min(k + 16, max(1, self.store.vectors.ntotal))
            found: list[tuple[float, int, str]] = []  # (cosine, id, modality): one search per modality
            allowed = {m: self._filter((m,), filters) for m in mods}
            if mode != "keyword":
                for m in mods:
                    if allowed[m].empty:
                        continue
                    scores, ids = self.store.vectors.search(vec[None, :], fetch, allowed=allowed[m])
                    found += [(float(s), int(i), m) for s, i in zip(scores[0], ids[0]) if i >= 0]
            if mode != "vector":  # keyword candidates the vector search did not bring, scored by their cosine
                matched = self._keyword_candidates(keywords, allowed, max(4 * fetch, 64))
                seen = {i for _, i, _ in found}
                extra = [(i, m) for i, m in matched if i not in seen]
                if extra:
                    vecs = self.store.vectors.reconstruct(np.array([i for i, _ in extra], np.int64))
                    found += [(float(v @ vec), i, m) for (i, m), v in zip(extra, vecs)]
            rel = self.relevance.relevance(vec, query_modality, [m for _, _, m in found],
                                           np.array([s for s, _, _ in found])) if found else np.empty(0)
            by_cosine = np.isnan(rel).any()
            order = sorted(range(len(found)), key=lambda j: (-found[j][0],) if by_cosine else (-rel[j], -found[j][0]))
            if mode != "vector":
                order = _fuse(order if mode == "hybrid" else [], [i for i, _ in matched], found, k)
            order = order[:fetch]
            rows = cat.items([found[j][1] for j in order[:k]])  # the top k; more only where rows vanished
            if len(rows) < min(k, len(order)):
                rows.update(cat.items([found[j][1] for j in order[k:]]))
            order = [j for j in order if found[j][1] in rows][:k]
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
                            locator=r.locator, text=r.text, relevance=None if np.isnan(r_) else float(r_), date=r.date))
        return sort_hits(hits, sort)

    def check(self, repair: bool = False) -> dict[str, Any]:
        """Do catalog and vectors agree (every item has exactly one vector and vice versa)?

        With `repair`, fix what does not: drop vectors the catalog does not know and forget items
        whose vector is gone (their files are re-embedded by the next `index`); nothing known is re-embedded.
        """
        with self._lock:
            if repair:
                self._writable()
                self.store.acquire_lock()
                try:
                    fixed = self.store.reconcile()
                finally:
                    self.store.release_lock()
            else:
                fixed = None
            ids = self.store.vectors.ids()
            cat = self.store.catalog.item_ids()
            report = {
                "vector_files": self.store.segments(),
                "vectors": int(ids.size), "items": int(cat.size),
                "duplicate_vector_ids": int(ids.size - np.unique(ids).size),
                "orphan_vectors": int(np.setdiff1d(ids, cat).size),
                "items_without_vector": int(np.setdiff1d(cat, ids).size),
                "keyword_index_mismatches": self.store.catalog.keyword_index_mismatches(),
            }
            report["consistent"] = not (report["duplicate_vector_ids"] or report["orphan_vectors"]
                                        or report["items_without_vector"] or report["keyword_index_mismatches"])
            if fixed is not None:
                report["repaired"] = fixed
            return report

    def item(self, item_id: int):
        """The catalog row of an indexed item (file, modality, locator, passage text), or None."""
        with self._lock:
            return self.store.catalog.items([int(item_id)]).get(int(item_id))

    def _keyword_candidates(self, keywords: str, allowed: dict[str, Any], limit: int) -> list[tuple[int, str]]:
        """(id, modality) of the items matching the keywords, best BM25 first, within the search's filters."""
        out = []
        matches = self.store.catalog.keyword_search(keywords, limit)
        # Items that match only the query's common words (BM25 far below the best match) carry no keyword
        # evidence; left in, they outvoted the vector ranking in the fusion (R@10 of meaning queries 1.00 -> 0.99).
        floor = KEYWORD_FLOOR * matches[0][1] if matches else 0.0
        for i, bm25 in matches:
            if bm25 < floor:
                break
            for m, filt in allowed.items():
                byte = i >> 3
                if byte < filt.n and (filt.bits[byte] >> (i & 7)) & 1:
                    out.append((i, m))
                    break
        return out

    def search_parts(self, parts: Iterable[tuple[float, str, Any]], *, k: int = 10,
                     types: Iterable[str] | str | None = None, min_relevance: float | None = None,
                     cutoff: str | None = None, filters: Filters | dict[str, Any] | None = None,
                     sort: str | None = None, mode: str | None = None) -> list[Hit]:
        """A composed query: (weight, modality, value) parts, e.g. [(1, "text", "a dog"), (1, "image", "beach.jpg"),
        (-0.5, "text", "people")]; modality "item" takes an indexed item's id ("more / less like this").

        Each part is encoded to a unit vector; the weighted sum is normalised and searched. The hits' relevance
        is read for the modality of the heaviest positive part. `mode` can only be vector: a weighted sum of
        vectors has no words to match."""
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
            mods.append(self.item(int(value)).modality if m == "item" else m)
        combined = np.sum([w * v for w, v in zip(weights, vecs)], axis=0)
        norm = float(np.linalg.norm(combined))
        if norm < 1e-6:
            raise UsageError("the query parts cancel out: nothing is left to search for")
        lead = mods[int(np.argmax(weights))]
        q = make_query(text="x", k=k, types=types)  # validates k and types
        result_types = q.types if types is not None else parse_types(None, lead)  # default: the others of the lead
        return self.search_vector(combined / norm, k=q.k, types=result_types, query_modality=lead,
                                  min_relevance=min_relevance, cutoff=cutoff, filters=filters, sort=sort)

    def _part_vector(self, modality: str, value: Any) -> np.ndarray:
        if modality == "item":
            row = self.item(int(value)) if str(value).lstrip("-").isdigit() else None
            if row is None:
                raise ItemNotFoundError(f"no indexed item with id {value}")
            with self._lock:
                self.store.refresh_vectors(self.dim)
                vec = self.store.vectors.reconstruct(np.array([row.id]))[0]
            return unit_rows(vec)
        if modality not in modality_names():
            raise UsageError(f"unknown query part modality {modality!r}; valid: item, {', '.join(modality_names())}")
        return self.encode_query(make_query(**{modality: value}))

    def search_like(self, item_id: int, *, k: int = 10, types: Iterable[str] | str | None = None,
                    min_relevance: float | None = None, cutoff: str | None = None,
                    filters: Filters | dict[str, Any] | None = None, sort: str | None = None) -> list[Hit]:
        """"More like this": search with an indexed item's own vector (no re-encoding)."""
        row = self.item(item_id)
        if row is None:
            raise ItemNotFoundError(f"no indexed item with id {item_id}")
        q = make_query(text="x", k=k, types=types)  # validates k and types
        with self._lock:
            self.store.refresh_vectors(self.dim)
            vec = unit_rows(self.store.vectors.reconstruct(np.array([row.id]))[0])
        return self.search_vector(vec, k=q.k, types=q.types if types is not None else None, query_modality=row.modality,
                                  min_relevance=min_relevance, cutoff=cutoff, filters=filters, sort=sort)

    def vectors(self, types: Iterable[str] | str | None = None, *, chunk: int = CHUNK,
                stored: bool = False) -> Iterator[VectorChunk]:
        """Every stored vector with its item's id and modality, `chunk` at a time, modality by modality (`types`:
        these only), ids ascending within each: for reading the whole collection (export, audits, clusters)
        without holding it decoded at once. Vectors are float32 unit rows; `stored=True` gives them as the index
        holds them where it holds floats (float16 in ivf-fp16), without renormalising."""
        mods = parse_types(types, "") if types is not None else None
        with self._lock:
            if not self.store.holds_lock:
                self.store.refresh_vectors(self.dim)
            cat, vectors = self.store.catalog, self.store.vectors
            present = np.sort(vectors.ids())
            names = mods or tuple(sorted(cat.counts()["items"]))
            plan = [(m, np.intersect1d(cat.item_ids((m,)), present)) for m in names]
        for m, ids in plan:
            for part, vecs in vectors.iter_vectors(ids, chunk=chunk, stored=stored):
                yield VectorChunk(part, np.full(part.size, m, dtype=object), vecs)

    # ----------------------------------------------------------------- info
    def stats(self) -> dict[str, Any]:
        rec = self.store.space_record() or {}
        counts = self.store.catalog.counts()
        size = sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())
        spec = rec.get("spec", {})
        return {
            "index": str(self.path),
            "space": {"name": spec.get("name"), "fingerprint": rec.get("fingerprint"), "metric": rec.get("metric"),
                      "dim": rec.get("dim"), "clip": spec.get("clip"), "precision": describe(self.precision),
                      "jpeg_draft": self.jpeg_draft,
                      "audio": None if not spec.get("audio") else spec["audio"].get("config", {}).get("arch")},
            "items": counts["items"],
            "items_total": sum(counts["items"].values()),
            "vectors": self.store.vectors.ntotal,
            "files_indexed": counts["files_indexed"],
            "files_skipped": counts["files_skipped"],
            "index_type": self.store.vectors.kind,
            "index_description": self.store.vectors.description,
            "index_policy": self.store.catalog.get_meta("index_type") or "auto",
            "item_options": json.loads(self.store.catalog.get_meta(ItemOptions.META_KEY) or "null"),
            "bytes_on_disk": size,
            "vector_segments": self.store.segment_stats(),
        }

    def skipped(self) -> list[tuple[str, str]]:
        return self.store.catalog.skipped()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _check_embedded(f: EmbeddedFile, dim: int) -> None:
    if f.error is not None or f.reuse:
        return
    n = len(f.items)
    v = None if f.vectors is None else np.asarray(f.vectors)
    if v is None or v.shape != (n, dim) or v.dtype != np.float32:
        raise UsageError(f"{f.entry.path}: expected float32 vectors of shape ({n}, {dim}), one per item, got "
                         f"{None if v is None else (v.shape, str(v.dtype))}")
    if n and (not np.isfinite(v).all() or np.abs(np.linalg.norm(v, axis=1) - 1).max() > 1e-3):
        raise UsageError(f"{f.entry.path}: vectors must be finite and L2-normalised")


def _expand(v: Any) -> Any:
    return os.path.expanduser(os.fspath(v)) if isinstance(v, (str, os.PathLike)) else v
