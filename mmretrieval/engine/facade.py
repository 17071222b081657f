"""`Engine`: an index folder and the space it lives in, the one object the CLI, the server and Python users call.

It opens (or creates) the index and loads the space at first need; each of its jobs is a part of its own:
`writing.Writer` (every write, under the writer's lock), `policy.IndexPolicy` (the index type, how files are
cut), `searching.Searcher` (every kind of search), `reading.Reader` (vectors as a stream, statistics, checks).
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

from ..errors import IndexNotFoundError, MissingWeightsError, SpaceMismatchError, UsageError
from ..index.vectors_stream import CHUNK, VectorChunk
from ..ingest.embed import EmbeddedFile
from ..ingest.indexer import IndexReport
from ..memory import Memory, Remembered, make_scope
from ..options import RayOptions
from ..query import Filters, Query
from ..relevance.scorer import RelevanceScorer
from ..space.backend import parse_backend
from ..space.device import parse_device
from ..space.precision import TOWERS, describe, parse_precision
from ..space.registry import spec_of
from ..space.spec import SpaceSpec, fingerprint_of
from ..space.image_decode import JPEG_DRAFT, JPEG_DRAFT_BEFORE
from ..store import Store, settle
from .policy import IndexPolicy
from .reading import Reader
from .migrating import MigrationReport, Migrator
from .remembering import Memories
from .searching import Hit, Searcher
from .viewing import ClustersReport, DupesReport, Views
from .writing import Writer

if TYPE_CHECKING:
    from ..space.runtime import Space

DEFAULT_SPACE = os.environ.get("MMR_MODEL", "vit-b-32-openai+wav2clip")


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
    ``space_from``: another engine over the same index (a server's readers) whose space this one uses once that one
    has loaded it, so that one copy of the models serves them all.
    """

    def __init__(self, path: str | os.PathLike, model: str | SpaceSpec | None = None, *, readonly: bool = False,
                 device: str = "cpu", precision: str | dict[str, str] | None = None,
                 backend: str | None = None, space_from: "Engine | None" = None) -> None:
        self.path = Path(os.path.expanduser(os.fspath(path))).resolve()
        self._space_from = space_from  # another engine over the same index whose loaded space this one uses
        self.device = device = parse_device(device)  # auto: a usable GPU if there is one (bulk work), else the CPU
        self.backend = parse_backend(backend)
        self._space: Space | None = None
        self._query_towers: dict[str, Any] = {}  # from the space's passport, until the space loads
        self.notes: list[str] = []  # what a user should hear once (the CLI prints them)
        self._relevance: RelevanceScorer | None = None
        self._lock = threading.RLock()
        self.writer, self.policy = Writer(self), IndexPolicy(self)
        self.searcher, self.reader, self.memory = Searcher(self), Reader(self), Memories(self)
        self.migrator = Migrator(self)
        self.views = Views(self)
        settle(self.path)  # a switch to another space cut short is finished before anything looks
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
            spec = spec_of(model or DEFAULT_SPACE)
            self.jpeg_draft = JPEG_DRAFT
            from ..space.runtime import Space  # torch: only where towers are built, not on read-only paths

            space = Space(spec, device=device, precision=precision,  # weights must exist before we create anything
                          backend=self.backend, jpeg_draft=self.jpeg_draft)
            dict(space.encoders)  # and every tower must load: one that cannot is an error before the index exists
            self.precision = space.precision  # auto resolved by the space (which knows what its towers can run)
            self.store = Store(self.path, create=True)
            self.store.init_space(spec, space.fingerprint, space.dim, precision=describe(self.precision),
                                  jpeg_draft=self.jpeg_draft, modality_towers=space.modality_towers)
            self._space = space
        else:
            self.store = Store(self.path, readonly=readonly)
            rec = self.store.space_record() or {}
            self.precision = parse_precision(rec.get("precision", "fp32"), device)  # older indexes: fp32
            self.jpeg_draft = int(rec.get("jpeg_draft", JPEG_DRAFT_BEFORE))
            if precision is not None:
                self._check_precision(parse_precision(precision, device))
            if model is not None:
                spec = spec_of(model)
                from ..space.runtime import space_identity

                try:
                    fp = fingerprint_of(space_identity(spec, precision=self.precision, jpeg_draft=self.jpeg_draft))
                except MissingWeightsError:
                    stored = self.store.stored_spec()
                    if stored is not None and stored.towers == spec.towers:
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
        if any(wanted.get(t, "fp32") != self.precision.get(t, "fp32") for t in (spec.modalities if spec else TOWERS)):
            raise SpaceMismatchError(
                f"the index at {self.path} encodes with precision {describe(self.precision)}, not "
                f"{describe(wanted)}: its vectors were made that way and queries must match them. "
                f"Omit --precision to use the index's own, or build a new index.")

    def _reopen(self) -> None:
        """Open the index folder again: another space's files took its place (a migration, a switch back). The
        writer's lock, if held, passes to the new store."""
        old = self.store
        try:
            old.catalog.close()
        except Exception:  # noqa: BLE001  (closed already by the switch)
            pass
        old._closed = True
        self.store = Store(self.path, readonly=self.readonly)
        self.store._lock_fd, old._lock_fd = old._lock_fd, None
        rec = self.store.space_record() or {}
        self.precision = parse_precision(rec.get("precision", "fp32"), self.device)
        self.jpeg_draft = int(rec.get("jpeg_draft", JPEG_DRAFT_BEFORE))
        self.dim = int(rec["dim"])
        self.store.load_vectors(self.dim)
        self._space, self._query_towers, self._relevance = None, {}, None
        self.searcher = Searcher(self)  # its filters name the old ids

    def follow_switch(self) -> None:
        """If another process switched the index to another space, open it again (searches call this first)."""
        if not self.store.holds_lock and self.store.switched():
            with self._lock:
                if self.store.switched():
                    self._reopen()

    @property
    def spec(self) -> SpaceSpec:
        spec = self.store.stored_spec()
        assert spec is not None
        return spec

    @property
    def space(self) -> Space:
        """The loaded encoders; loaded on first use and checked against the index's fingerprint."""
        with self._lock:
            if self._space is None and self._space_from is not None:
                self._adopt(self._space_from.space)
            if self._space is None:
                from ..space.runtime import Space

                space = Space(self.spec, device=self.device, precision=self.precision, backend=self.backend,
                              jpeg_draft=self.jpeg_draft)
                self.store.check_space(space.spec.name, space.fingerprint, space.spec.metric)
                self._space = space
            return self._space

    def _adopt(self, space: Space) -> None:
        """Use another engine's loaded space where it is this index's (not where one of them follows a switch to
        another space that the other has not seen yet)."""
        try:
            self.store.check_space(space.spec.name, space.fingerprint, space.spec.metric)
        except SpaceMismatchError:
            return
        self._space = space

    def query_encoder(self, modality: str) -> Any:
        """The encoder of a `modality` query (None: the space has no such tower). Until something loads the
        space, a query tower its passport vouches for (`space.passport`: the tower's ONNX export) answers:
        a one-off `mmr search` then imports neither torch nor open_clip. On the CPU only, and not where
        torch was asked for (`backend`)."""
        from ..modalities import get_modality
        from ..space import passport

        with self._lock:
            if self._space is None and self._space_from is not None and self._space_from._space is not None:
                self._adopt(self._space_from._space)
            light = self._space is None and self.device == "cpu" and self.backend != "torch"
            if light:
                if modality not in self._query_towers:
                    fingerprint = (self.store.space_record() or {}).get("fingerprint", "")
                    self._query_towers[modality] = passport.query_encoder(fingerprint, self.spec, modality)
                if self._query_towers[modality] is not None:
                    return self._query_towers[modality]
            t = time.perf_counter()
            enc = get_modality(modality).encoder(self.space)  # the loaded space: checked against the index
            if light and not passport.ready(self.space.fingerprint, self.space.spec, modality):
                self.space.make_query_tower(modality)  # one made only for queries (the audio tower's export)
            if light and passport.ready(self.space.fingerprint, self.space.spec, modality):
                self.notes.append(f"this {modality} query loaded the space's models ({time.perf_counter() - t:.1f} s); "
                                  f"from now on a one-off {modality} query runs from their ONNX export")
            return enc

    def prepare(self) -> None:
        """Load the space and every tower, and open their runtimes now, so that the first query does not wait for
        them (a server calls it in the background as it starts)."""
        for encoder in self.space.encoders.values():
            encoder.warm_up()

    @property
    def relevance(self) -> RelevanceScorer:
        if self._relevance is None:
            rec = self.store.space_record() or {}
            self._relevance = RelevanceScorer(self.store, rec.get("fingerprint", ""))
        return self._relevance

    def item(self, item_id: int):
        """The catalog row of an indexed item (file, modality, locator, passage text), or None."""
        with self._lock:
            return self.store.catalog.items([int(item_id)]).get(int(item_id))

    # ----------------------------------------------------------------- writing
    def index(self, paths: Iterable[str | os.PathLike], *, batch_size: int = 32, workers: int | None = None,
              progress: bool = False, checkpoint_seconds: float = 30.0, pool_audio: bool | None = None,
              ocr: str | None = None,
              index_type: str | None = None, memory_budget: int | None = None,
              ray: RayOptions | None = None) -> IndexReport:
        """Index (incrementally) every supported file under `paths`.

        Long audio becomes one item per window (start/end seconds); `pool_audio` makes it one item per
        file instead (the mean of its window vectors). `ocr` ("off", "scans", "all"): which pictures OCR reads into
        passages (the ocr extra; "scans": scanned and drawn pages of documents). How files are cut into items (`options.ItemOptions`) is
        the index's: recorded the first time, then used by every run (None: the recorded); another value once
        the index holds items it would cut differently is refused. `index_type` (flat, hnsw, ivf-fp16, ivf-flat,
        ivf-sq8, ivf-pq, or auto) and `memory_budget` (bytes) are remembered by the index; with neither, the type
        follows the collection's size (`index.choose.choose_index`), converting without re-embedding when it
        changes.
        `ray`: embed on a Ray cluster (`ingest.distributed`); planning and the commit stay here, and files
        embedded by an interrupted run (staged under the index's `staging/`) are not embedded again."""
        return self.writer.index(paths, batch_size=batch_size, workers=workers, progress=progress,
                                 checkpoint_seconds=checkpoint_seconds, pool_audio=pool_audio, ocr=ocr,
                                 index_type=index_type,
                                 memory_budget=memory_budget, ray=ray)

    def add_embeddings(self, files: Iterable[EmbeddedFile], *, checkpoint_seconds: float = 30.0) -> IndexReport:
        """Commit files embedded elsewhere: by `ingest.embed` in another process or on another machine
        (`run_embed_task`), with this index's space. Each file's vectors must come from that space (same
        fingerprint: checked) and be L2-normalised float32, one per item. A file already in the index is
        replaced, as `index` does with a changed file; files are not swept (nothing here walks folders)."""
        return self.writer.add_embeddings(files, checkpoint_seconds=checkpoint_seconds)

    def remove(self, paths: Iterable[str | os.PathLike]) -> int:
        """Forget every indexed file under `paths` (files stay on disk). Returns files removed."""
        return self.writer.remove(paths)

    def compact(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Write the vectors as one base file, merging the delta segments. Returns the storage before and after
        (`Store.segment_stats`). Checkpoints do this by themselves once the deltas outgrow a share of the base."""
        return self.writer.compact()

    def calibrate(self, pairs_file: str | os.PathLike, *, k: int = 10) -> dict[str, Any]:
        """Fit calibrated relevance on labelled pairs (JSONL/CSV: image or audio, caption, label) and store it in
        the index: per pair of modalities, P(relevant | null z-score) over the top-k hits of every query."""
        return self.writer.calibrate(pairs_file, k=k)

    # ----------------------------------------------------------------- searching
    def encode_query(self, q: Query) -> np.ndarray:
        return self.searcher.encode_query(q)

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
        return self.searcher.search(text, image=image, audio=audio, k=k, types=types, min_relevance=min_relevance,
                                    cutoff=cutoff, filters=filters, sort=sort, mode=mode, **others)

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
        return self.searcher.search_vector(vec, k=k, types=types, query_modality=query_modality,
                                           min_relevance=min_relevance, cutoff=cutoff, filters=filters, sort=sort,
                                           keywords=keywords, mode=mode)

    def search_parts(self, parts: Iterable[tuple[float, str, Any]], *, k: int = 10,
                     types: Iterable[str] | str | None = None, min_relevance: float | None = None,
                     cutoff: str | None = None, filters: Filters | dict[str, Any] | None = None,
                     sort: str | None = None, mode: str | None = None) -> list[Hit]:
        """A composed query: (weight, modality, value) parts, e.g. [(1, "text", "a dog"), (1, "image", "beach.jpg"),
        (-0.5, "text", "people")]; modality "item" takes an indexed item's id ("more / less like this").

        Each part is encoded to a unit vector; the weighted sum is normalised and searched. The hits' relevance
        is read for the modality of the heaviest positive part. `mode` can only be vector: a weighted sum of
        vectors has no words to match."""
        return self.searcher.search_parts(parts, k=k, types=types, min_relevance=min_relevance, cutoff=cutoff,
                                          filters=filters, sort=sort, mode=mode)

    def search_like(self, item_id: int, *, k: int = 10, types: Iterable[str] | str | None = None,
                    min_relevance: float | None = None, cutoff: str | None = None,
                    filters: Filters | dict[str, Any] | None = None, sort: str | None = None) -> list[Hit]:
        """"More like this": search with an indexed item's own vector (no re-encoding)."""
        return self.searcher.search_like(item_id, k=k, types=types, min_relevance=min_relevance, cutoff=cutoff,
                                         filters=filters, sort=sort)

    # ----------------------------------------------------------------- migration
    def migrate(self, to: str | SpaceSpec, *, dry_run: bool = False, progress: bool = False, bridge: bool = False,
                ray: RayOptions | None = None) -> MigrationReport:
        """Move the index to another space (`engine.migrating`): a sample is indexed in it first and the rest
        estimated from its time per file (`dry_run` stops there); then every file is indexed into the new space
        beside the current one (searches keep answering from the current one; a kill loses at most the last
        checkpoint: the same call goes on), the notes are carried over, and the folder switches. The old space is
        kept (`migrate_back`, `drop_old_spaces`). `bridge`: switch as soon as a bridge fitted on the first items
        carries the others' old vectors into the new space (their hits are marked approximate), then embed them
        for real. `ray`: embed on a Ray cluster, as `index` does."""
        return self.migrator.migrate(to, dry_run=dry_run, progress=progress, bridge=bridge, ray=ray)

    def migrate_back(self, fingerprint: str | None = None) -> dict[str, Any]:
        """Switch to a space kept from before a migration (the newest, or `fingerprint`), encoding no file."""
        return self.migrator.back(fingerprint)

    def drop_old_spaces(self) -> int:
        """Delete the spaces kept from before migrations; returns the bytes freed."""
        return self.migrator.drop_old()

    def abandon_migration(self) -> bool:
        """Delete a migration under way (False: there was none)."""
        return self.migrator.abandon()

    # ----------------------------------------------------------------- memory
    def remember(self, text: str, *, user: str | None = None, agent: str | None = None, session: str | None = None,
                 metadata: dict[str, Any] | None = None, merge: bool = True,
                 merge_above: float | None = None) -> Remembered:
        """Keep a note in the index's space (an agent's memory, see `memory`): no file, recalled by meaning.

        `user`, `agent`, `session` scope it (names; None: none). A text that restates a memory of exactly the same
        scope (the same words, or its vector at `merge_above` cosine or closer, default `memory.MERGE_COSINE`)
        updates that memory instead of adding a copy; the result says which happened and the text replaced.
        `merge=False` always adds. Metadata (flat names to strings, numbers, booleans) can filter recall."""
        return self.memory.remember(text, scope=make_scope(user, agent, session), metadata=metadata, merge=merge,
                                    merge_above=merge_above)

    def recall(self, query: str | None = None, *, image: Any = None, audio: Any = None, k: int = 5,
               user: str | None = None, agent: str | None = None, session: str | None = None,
               metadata: dict[str, Any] | None = None, recency: float = 0.0, half_life_days: float = 7.0,
               after: float | None = None, before: float | None = None) -> list[Memory]:
        """The `k` memories closest in meaning to a query (text, or an image or sound), best first, among those of
        the scope given (each of user, agent, session given must match exactly; None: any) whose metadata has
        the values in `metadata` and that were updated in [`after`, `before`). `recency` (0..1) discounts older
        memories: a memory's cosine times (1 - recency + recency * 0.5 ** (age / half_life_days))."""
        return self.memory.recall(query, image=image, audio=audio, k=k, scope=make_scope(user, agent, session),
                                  metadata=metadata, recency=recency, half_life_days=half_life_days, after=after,
                                  before=before)

    def update_memory(self, memory_id: int, text: str | None = None, *, metadata: dict[str, Any] | None = None,
                      user: str | None = None, agent: str | None = None, session: str | None = None) -> Memory:
        """Give a memory new text (embedded again) and/or metadata (merged into its own). The memory must be in
        the scope given (MemoryNotFoundError otherwise: a caller scoped to one user never touches another's)."""
        return self.memory.update(memory_id, text, metadata=metadata, scope=make_scope(user, agent, session))

    def forget(self, memory_id: int | None = None, *, user: str | None = None, agent: str | None = None,
               session: str | None = None, metadata: dict[str, Any] | None = None, everything: bool = False) -> int:
        """Forget one memory (by id, within the scope given) or every memory of a scope and metadata; forgetting
        all memories needs `everything=True`. Returns how many were forgotten."""
        return self.memory.forget(memory_id, scope=make_scope(user, agent, session), metadata=metadata,
                                  everything=everything)

    def memories(self, *, user: str | None = None, agent: str | None = None, session: str | None = None,
                 metadata: dict[str, Any] | None = None, after: float | None = None, before: float | None = None,
                 limit: int | None = None) -> list[Memory]:
        """The memories of a scope, most recently updated first."""
        return self.memory.list(scope=make_scope(user, agent, session), metadata=metadata, after=after,
                                before=before, limit=limit)

    # ----------------------------------------------------------------- reading
    def vectors(self, types: Iterable[str] | str | None = None, *, chunk: int = CHUNK,
                stored: bool = False) -> Iterator[VectorChunk]:
        """Every stored vector with its item's id and modality, `chunk` at a time, modality by modality (`types`:
        these only), ids ascending within each: for reading the whole collection (export, audits, clusters)
        without holding it decoded at once. Vectors are float32 unit rows; `stored=True` gives them as the index
        holds them where it holds floats (float16 in ivf-fp16), without renormalising."""
        return self.reader.vectors(types, chunk=chunk, stored=stored)

    # ----------------------------------------------------------------- collection views
    def dupes(self, types: Iterable[str] | str | None = None, *, threshold: float | None = None,
              radius: float | None = None) -> DupesReport:
        """Groups of near-duplicates (re-saved, resized, slightly cropped or re-encoded copies; byte-for-byte copies
        marked exact), largest first, the member to keep first with the reason. Candidates come from the index's
        range search within cosine `radius`; each pair is confirmed by comparing the items' content (pixels,
        spectrogram, words: `collection.dupes`) at likeness `threshold` (default: measured per modality; lower
        takes in near neighbours such as burst shots)."""
        return self.views.dupes(types, threshold=threshold, radius=radius)

    def clusters(self, types: Iterable[str] | str | None = None, *, k: int | str | None = None,
                 bridge: bool = False, refit: bool = False) -> ClustersReport:
        """k-means clusters in the shared space over every modality asked for (`k` None/"auto": chosen by
        silhouette), each named by the built-in vocabulary's labels and the collection's nearest passage; kept
        and updated incrementally (`refit` forces a new fit). `bridge`: take each modality's mean direction out
        first, so that pictures, sounds and texts of one subject can share a cluster (`collection.clusters`)."""
        return self.views.clusters(types, k=k, bridge=bridge, refit=refit)

    def outliers(self, types: Iterable[str] | str | None = None, *, k: int | str | None = None,
                 z: float = 3.5, limit: int | None = 50) -> dict[str, Any]:
        """Items far from their cluster's centre compared with its other members (robust z-score >= `z`), most
        unusual first, each with its cluster and its nearest other item."""
        return self.views.outliers(types, k=k, z=z, limit=limit)

    def map(self, types: Iterable[str] | str | None = None, *, k: int | str | None = None,
            method: str = "pca") -> list[dict[str, Any]]:
        """Every item as a point in two dimensions (PCA, or UMAP with umap-learn) with its cluster."""
        return self.views.map(types, k=k, method=method)[0]

    def map_png(self, types: Iterable[str] | str | None = None, *, k: int | str | None = None, method: str = "pca",
                width: int = 1200, height: int = 900) -> bytes:
        """The map drawn as a PNG (matplotlib): clusters coloured and named, modalities by marker."""
        return self.views.map_png(types, k=k, method=method, width=width, height=height)

    def stats(self) -> dict[str, Any]:
        return self.reader.stats()

    def check(self, repair: bool = False) -> dict[str, Any]:
        """Do catalog and vectors agree (every item has exactly one vector and vice versa)?

        With `repair`, fix what does not: drop vectors the catalog does not know and forget items
        whose vector is gone (their files are re-embedded by the next `index`); nothing known is re-embedded.
        """
        return self.reader.check(repair)

    def skipped(self) -> list[tuple[str, str]]:
        return self.store.catalog.skipped()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
