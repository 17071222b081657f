"""Indexing, part 2 of 3: embed. Files in, vectors out; no catalog, no index, no ids.

`Embedder.stream` reads, hashes and decodes files in worker threads (ahead of the model) and encodes
their items in batches per modality (each item's own: one file may give items of several), yielding one
`EmbeddedFile` per input file, in input order. A file with more items than a worker decodes ahead
(`decode.HEAD`) is read on as its items are batched, so memory holds a batch of them, not the file. It
knows nothing of the catalog beyond `reusable` (plain data from the plan: contents whose vectors the
index already holds), so the same code runs here, in another process or on another machine
(`EmbedTask` is picklable; `run_embed_task` builds the space once per process). The results go to the
single writer (`commit.Committer`, or `Engine.add_embeddings` for vectors made elsewhere).
"""
from __future__ import annotations

import logging
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..catalog import ItemRecord
from ..errors import DecodeError
from ..modalities import get_modality
from ..modalities.audio import PooledWindows
from ..options import ItemOptions
from .decode import Decoded, Decoder, read_and_hash
from .walk import FileEntry

__all__ = ["EmbeddedFile", "Embedder", "EmbedTask", "ItemRecord", "run_embed_task"]

log = logging.getLogger(__name__)

ENCODER_BUG = ("not indexed because of an internal error in mmretrieval, not a problem with this file "
               "(please report it; MMR_DEBUG=1 shows the details)")


@dataclass
class EmbeddedFile:
    """One file's outcome: its items and their vectors, or the reason it is skipped, or "reuse"."""

    entry: FileEntry
    hash: str | None
    fingerprint: str                                   # the space that made the vectors
    items: list[ItemRecord] = field(default_factory=list)  # (locator, text, modality) per item
    vectors: np.ndarray | None = None                  # [len(items), dim] float32, L2-normalised
    error: str | None = None                           # why it is skipped (about the file)
    note: str | None = None                            # indexed, with something to know (e.g. only in part)
    reuse: bool = False                                # the index already holds vectors for this content
    cached: bool = False                               # items and vectors from the embedding cache (no encoding)
    meta: dict[str, Any] | None = None                 # date, date_source, tags (modalities/metadata.py)


@dataclass
class _Open:
    """A decoded file whose items are being encoded."""

    decoded: Decoded
    items: list[ItemRecord] = field(default_factory=list)
    vectors: list[np.ndarray | None] = field(default_factory=list)
    missing: int = 0
    modalities: set[str] = field(default_factory=set)  # of its items
    error: str | None = None

    @property
    def entry(self) -> FileEntry:
        return self.decoded.entry

    def result(self, fingerprint: str, dim: int) -> EmbeddedFile:
        d = self.decoded
        if self.error is not None:
            return EmbeddedFile(d.entry, None, fingerprint, error=self.error)
        vecs = np.stack(self.vectors) if self.vectors else np.empty((0, dim), np.float32)
        items, vecs = finished(d.entry, self.items, vecs)
        return EmbeddedFile(d.entry, d.hash, fingerprint, items, vecs, note=d.note, meta=d.meta)


def finished(entry: FileEntry, items: list[ItemRecord], vectors: np.ndarray) -> tuple[list[ItemRecord], np.ndarray]:
    """A file's items as its modality stores them (`Modality.finish`: a video's frame samples become scenes)."""
    finish = get_modality(entry.modality).finish
    if finish is None or not items:
        return items, vectors
    out, vectors = finish(items, vectors)
    return [ItemRecord(*r) for r in out], np.ascontiguousarray(vectors, np.float32)


class Embedder:
    """Decode + encode for one loaded space. `reusable`: content hash -> (modality, path or None) of
    vectors the index already holds; such files are hashed but not decoded (moves and copies).

    A modality whose encoder runs best one item per core (`Encoder.per_core`: int8 images on the CPU) is
    encoded by the worker that decoded the file, and the workers are then as many as those cores; the
    others are batched on the calling thread. On a GPU every core decodes: the CPU has no model to run (a
    12-MP JPEG took ~50 ms of a core to decode and preprocess there, a ViT-B-32 image 0.2 ms of an H200).
    `workers` (default: as many as the cores a per-core encoder uses, else every core on a GPU, else the
    cores up to 4) overrides."""

    def __init__(self, space: Any, *, batch_size: int = 32, workers: int | None = None,
                 options: ItemOptions | None = None,
                 reusable: dict[str, tuple[str, str | None]] | None = None,
                 cached: Callable[[str, str], Any] | None = None) -> None:
        """`cached(content hash, modality)`: a file's (items, vectors, meta) kept from before, or None."""
        self.space = space
        self.cached = cached
        self.batch_size = max(1, batch_size)
        cores = {m: enc.per_core() for m, enc in space.encoders.items() if enc is not None}
        self.per_core = {m for m, n in cores.items() if n}
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        on_cpu = getattr(space, "device", None) is None or space.device.type == "cpu"
        default = max((n for n in cores.values() if n), default=min(4, usable) if on_cpu else usable)
        self.workers = max(1, workers if workers is not None else default)
        self.decoder = Decoder(space, options=options)
        self.reusable = reusable or {}

    # ----------------------------------------------------------------- per file, in worker threads
    def _prepare(self, entry: FileEntry) -> Decoded | EmbeddedFile:
        try:
            digest, data = read_and_hash(entry.path, entry.size)
            known = self.reusable.get(digest)
            if known is not None and known[0] == entry.modality and known[1] != entry.path:
                return EmbeddedFile(entry, digest, self.space.fingerprint, reuse=True)
            hit = self.cached(digest, entry.modality) if self.cached is not None else None
            if hit is not None:
                items, vectors, meta = hit
                return EmbeddedFile(entry, digest, self.space.fingerprint, [ItemRecord(*i) for i in items], vectors,
                                    meta=meta, cached=True)
            decoded = self.decoder.decode(entry, digest, data)
            here = decoded.rest is None and decoded.head and all(it.modality in self.per_core for it in decoded.head)
            return self._encode_here(decoded) if here else decoded
        except DecodeError as e:
            return EmbeddedFile(entry, None, self.space.fingerprint, error=str(e))
        except MemoryError:
            return EmbeddedFile(entry, None, self.space.fingerprint, error="out of memory while decoding")
        except Exception as e:  # one bad file never ends the run
            return EmbeddedFile(entry, None, self.space.fingerprint,
                                error=f"unexpected {type(e).__name__}: {str(e)[:200]}")

    def _encode_here(self, d: Decoded) -> EmbeddedFile:
        items = [ItemRecord(it.locator, it.text, it.modality) for it in d.head]
        try:
            vectors = np.empty((len(items), self.space.dim), np.float32)
            for m in {it.modality for it in d.head}:
                rows = [i for i, it in enumerate(d.head) if it.modality == m]
                vectors[rows] = self.space.encoder(m).encode_here([d.head[i].payload for i in rows])
        except Exception:  # decoding vetted the file: ours to fix (the log has the trace), the run goes on
            log.exception("encoding %s failed", d.entry.path)
            return EmbeddedFile(d.entry, None, self.space.fingerprint, error=ENCODER_BUG)
        items, vectors = finished(d.entry, items, vectors)
        return EmbeddedFile(d.entry, d.hash, self.space.fingerprint, items, vectors, note=d.note, meta=d.meta)

    # ----------------------------------------------------------------- the stream
    def stream_plan(self, plan: Any) -> Iterator[EmbeddedFile]:
        """The files a plan says to embed (`plan.todo`), embedded in order."""
        return self.stream(plan.todo)

    def stream(self, entries: Iterable[FileEntry]) -> Iterator[EmbeddedFile]:
        """One `EmbeddedFile` per entry, in order; decoding runs ahead in threads, encoding in batches."""
        entries = list(entries)
        window = max(4 * self.workers, 8)  # bounded read-ahead keeps memory bounded
        done: deque[_Open | EmbeddedFile] = deque()
        queues: dict[str, list[tuple[_Open, int, Any]]] = {}
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="mmr-decode") as pool:
            futures: deque[Future] = deque()
            it = iter(entries)
            for e in it:
                futures.append(pool.submit(self._prepare, e))
                if len(futures) >= window:
                    break
            while futures:
                result = futures.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    futures.append(pool.submit(self._prepare, nxt))
                done.append(self._open(result, queues))
                # Encode full batches; if the oldest file waits on a modality that fills slowly, encode it now.
                self._encode_full(queues)
                if len(done) > 4 * self.batch_size and isinstance(done[0], _Open) and done[0].missing:
                    for modality in list(done[0].modalities):
                        self._encode(modality, queues)
                yield from self._ready(done)
        for modality in list(queues):
            while queues[modality]:
                self._encode(modality, queues, self.batch_size)
        yield from self._ready(done)
        assert not done

    def _open(self, result: Decoded | EmbeddedFile, queues: dict[str, list]) -> _Open | EmbeddedFile:
        """Queue a decoded file's items for encoding. Items past its head are decoded here as they are queued,
        full batches encoded on the way, so that they never pile up."""
        if isinstance(result, EmbeddedFile):
            return result
        f = _Open(result)
        for it in result.head:
            self._queue(f, it, queues)
        if result.rest is not None:
            try:
                for it in result.rest:
                    self._queue(f, it, queues)
                    if len(queues[it.modality]) >= self.batch_size:
                        self._encode_full(queues)
            except DecodeError as e:
                f.error = str(e)
            except MemoryError:
                f.error = "out of memory while decoding"
            except Exception as e:  # one bad file never ends the run
                f.error = f"unexpected {type(e).__name__}: {str(e)[:200]}"
        return f

    def _queue(self, f: _Open, it: Any, queues: dict[str, list]) -> None:
        f.items.append(ItemRecord(it.locator, it.text, it.modality))
        f.vectors.append(None)
        f.missing += 1
        f.modalities.add(it.modality)
        queues.setdefault(it.modality, []).append((f, len(f.items) - 1, it.payload))

    def _encode_full(self, queues: dict[str, list]) -> None:
        for modality in list(queues):
            while len(queues[modality]) >= self.batch_size:
                self._encode(modality, queues, self.batch_size)

    def _encode(self, modality: str, queues: dict[str, list], n: int | None = None) -> None:
        q = queues.get(modality) or []
        n = len(q) if n is None else min(n, len(q))
        batch, queues[modality] = q[:n], q[n:]
        if not batch:
            return
        encoder = self.space.encoder(modality)
        payloads = [p for _, _, p in batch]
        try:
            vecs = _encode(encoder, payloads)
            ok = [True] * len(batch)
        except Exception:
            # Isolate the item that breaks the batch; its file is skipped, the rest goes on.
            vecs = np.zeros((len(batch), encoder.dim), np.float32)
            ok = [False] * len(batch)
            for i, p in enumerate(payloads):
                try:
                    vecs[i] = _encode(encoder, [p])[0]
                    ok[i] = True
                except Exception:
                    # Decoding already vetted the file, so this is a bug of ours, not the file's problem:
                    # the file is skipped (the run goes on) with a reason that says so; the log has the trace.
                    log.exception("encoding an item of %s failed", batch[i][0].entry.path)
        for (f, i, _), v, good in zip(batch, vecs, ok):
            f.vectors[i] = v
            f.missing -= 1
            if not good:
                f.error = ENCODER_BUG

    def _ready(self, done: deque) -> Iterator[EmbeddedFile]:
        while done and (not isinstance(done[0], _Open) or done[0].missing == 0):
            f = done.popleft()
            yield f if isinstance(f, EmbeddedFile) else f.result(self.space.fingerprint, self.space.dim)


def _encode(encoder: Any, payloads: list[Any]) -> np.ndarray:
    """Encode a batch; a pooled audio payload becomes the normalised mean of its windows' vectors."""
    if not any(isinstance(p, PooledWindows) for p in payloads):
        return encoder.encode(payloads, batch_size=len(payloads))
    return np.stack([encoder.encode_pooled(p if isinstance(p, PooledWindows) else [p]) for p in payloads])


# ----------------------------------------------------------------- in another process
@dataclass(frozen=True)
class EmbedTask:
    """Everything a worker process needs to embed a share of the files (plain, picklable data)."""

    space: dict[str, Any]                 # SpaceSpec.to_dict()
    precision: str | dict[str, str]
    entries: tuple[FileEntry, ...]
    reusable: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    batch_size: int = 32
    workers: int | None = None
    options: dict[str, Any] = field(default_factory=dict)  # ItemOptions.to_dict()
    jpeg_draft: int = 1                   # the index's Engine.jpeg_draft (1 = space.towers.JPEG_DRAFT)


_SPACES: dict[str, Any] = {}


def run_embed_task(task: EmbedTask) -> list[EmbeddedFile]:
    """Embed `task.entries` in this process; the space is built once per process and reused."""
    import json

    from ..space.runtime import Space
    from ..space.spec import SpaceSpec

    key = json.dumps([task.space, task.precision, task.jpeg_draft], sort_keys=True, default=str)
    space = _SPACES.get(key)
    if space is None:
        space = _SPACES[key] = Space(SpaceSpec.from_dict(task.space), precision=task.precision,
                                     jpeg_draft=task.jpeg_draft)
    emb = Embedder(space, batch_size=task.batch_size, workers=task.workers,
                   options=ItemOptions.from_dict(task.options), reusable=task.reusable)
    return list(emb.stream(task.entries))
