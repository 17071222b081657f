"""Embedding shards in clip-retrieval's layout: `mmr export` writes an index's vectors and metadata as files
other tools read, `mmr import` builds an index from such shards (vectors are not computed again).

    DIR/manifest.json                                  the space record (fingerprint, dim, metric), counts
    DIR/image/img_emb/img_emb_<run>_<k>.npy            float32 [n, dim], L2-normalised
    DIR/image/metadata/metadata_<run>_<k>.parquet      row-aligned: image_path, path, sha256, locator, ...
    DIR/text/text_emb/text_emb_<run>_<k>.npy           (and text/metadata/...)
    DIR/audio/audio_emb/audio_emb_<run>_<k>.npy        (and audio/metadata/...)
    DIR/skipped.parquet                                files that were skipped, with the reason

`image_path` is the column clip-retrieval and autofaiss expect beside `img_emb`; the other columns carry what
the catalog needs to rebuild an index (file size, mtime, date, tags; each item's locator and text; the file's own
modality and item count, since one file's items may be of several modalities and so in several shards). Needs
pyarrow (the `shards` extra).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .catalog import ItemRecord
from .errors import MMRError, UsageError
from .ingest.embed import EmbeddedFile
from .ingest.walk import FileEntry
from .embedding_cache import FILE as CACHE_FILE
from .shard_format import FORMAT, SHARD_ROWS, emb_dir, pyarrow, write_part

if TYPE_CHECKING:
    from .engine import Engine

def export_shards(engine: Engine, out: str | os.PathLike, *, run: int = 0, shard_rows: int = SHARD_ROWS,
                  with_cache: bool = False) -> dict[str, Any]:
    """Write every item's vector and metadata under `out` (which must be empty or new). Returns the manifest.
    `with_cache`: the embedding cache too (`CACHE_FILE`: vectors of files no longer indexed, which an import
    takes in, so that their content coming back there costs no encoding either)."""
    pa, pq = pyarrow()
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty; export into a new or empty folder")
    cat, vectors = engine.store.catalog, engine.store.vectors
    counts: dict[str, int] = {}
    shards: dict[str, list[str]] = {}

    def write(modality: str, part: list[dict]) -> None:
        k = len(shards.get(modality, []))
        ids = np.array([r["item_id"] for r in part], np.int64)
        vecs = np.concatenate([v for _, v in vectors.iter_vectors(ids)])  # unit rows: quantised indexes drift
        emb = write_part(out, modality, f"{run}_{k}", part, vecs)
        shards.setdefault(modality, []).append(str(emb.relative_to(out)))
        counts[modality] = counts.get(modality, 0) + len(part)

    for modality in cat.counts()["items"]:
        part: list[dict] = []
        for r in cat.export_rows(modality):  # by path, then position in the file
            if len(part) >= shard_rows and r["path"] != part[-1]["path"]:  # a file never spans two shards
                write(modality, part)
                part = []
            part.append(r)
        if part:
            write(modality, part)
    memories = _export_memories(out, run, cat.memory_export_rows(), vectors)
    skipped = cat.skipped_rows()
    if skipped:
        pq.write_table(pa.Table.from_pylist(skipped), out / "skipped.parquet")
    manifest = {"format": FORMAT, "space": engine.store.space_record(), "items": counts, "skipped": len(skipped),
                "shards": shards, "memories": memories}
    out.mkdir(parents=True, exist_ok=True)
    if with_cache and engine.store.cache.path.exists():
        manifest["embedding_cache"] = engine.store.cache.copy_to(out / CACHE_FILE)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


MEMORY_SHARD = "memory"  # beside the modalities' folders: not a modality, so readers of shards pass it by


def _export_memories(out: Path, run: int, rows: Iterator[dict[str, Any]], vectors: Any) -> dict[str, Any]:
    """An agent's memories, one row per passage (with the memory's text, scope, metadata and times) and its
    vector: an import keeps them without embedding them again."""
    part = list(rows)
    if not part:
        return {"count": 0, "shards": []}
    vecs = np.concatenate([v for _, v in vectors.iter_vectors(np.array([r["item_id"] for r in part], np.int64))])
    emb = write_part(out, MEMORY_SHARD, f"{run}_0", part, vecs)
    return {"count": len({r["memory_id"] for r in part}), "shards": [str(emb.relative_to(out))]}


def read_memories(src: str | os.PathLike) -> list[dict[str, Any]]:
    """The memories an export holds, as `Memories.add_embedded` takes them (none from older exports)."""
    _, pq = pyarrow()
    src = Path(src).expanduser()
    out: dict[int, dict[str, Any]] = {}
    for name in read_manifest(src).get("memories", {}).get("shards", []):
        emb = src / name
        meta = emb.parent.parent / "metadata" / emb.name.replace(emb_dir(MEMORY_SHARD), "metadata", 1).replace(
            ".npy", ".parquet")
        vecs = np.load(emb).astype(np.float32)
        rows = pq.read_table(meta).to_pylist()
        if len(rows) != vecs.shape[0]:
            raise MMRError(f"{emb} holds {vecs.shape[0]} vectors but {meta} {len(rows)} rows: the shard is damaged")
        for r, v in zip(rows, vecs):
            m = out.setdefault(r["memory_id"], {
                "text": r["memory"], "user": r["user"], "agent": r["agent"], "session": r["session"],
                "metadata": json.loads(r["metadata"]) if r["metadata"] else {}, "created": r["created"],
                "updated": r["updated"], "items": [], "vectors": [], "total": r["memory_items"]})
            m["items"].append(ItemRecord(json.loads(r["locator"]), r["text"], "text"))
            m["vectors"].append(v)
    for memory_id, m in out.items():
        if len(m["items"]) != m.pop("total"):
            raise MMRError(f"{src}: memory {memory_id} has only part of its passages: the export is incomplete")
        m["vectors"] = np.stack(m["vectors"])
    return list(out.values())


def read_manifest(src: str | os.PathLike) -> dict[str, Any]:
    path = Path(src).expanduser() / "manifest.json"
    if not path.is_file():
        raise UsageError(f"{src} holds no manifest.json: not a folder written by `mmr export`")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise UsageError(f"{path}: unknown shard format {manifest.get('format')!r} (expected {FORMAT})")
    return manifest


def read_shards(src: str | os.PathLike, fingerprint: str) -> Iterator[EmbeddedFile]:
    """The files of the shards under `src`, as embedded files of the space with this fingerprint (skips too). A file
    whose items lie in several modalities' shards is given once, whole, when its last part has been read."""
    _, pq = pyarrow()
    src = Path(src).expanduser()
    manifest = read_manifest(src)
    partial: dict[str, _Parts] = {}
    for modality, names in manifest["shards"].items():
        for name in names:
            emb = src / name
            meta = emb.parent.parent / "metadata" / emb.name.replace(emb_dir(modality), "metadata", 1).replace(
                ".npy", ".parquet")
            vecs = np.load(emb)
            rows = pq.read_table(meta).to_pylist()
            if len(rows) != vecs.shape[0]:
                raise MMRError(f"{emb} holds {vecs.shape[0]} vectors but {meta} {len(rows)} rows: the shard is damaged")
            for parts in _files(rows, vecs.astype(np.float32), modality):
                if parts.path in partial:
                    parts = partial.pop(parts.path).join(parts)
                if parts.whole:
                    yield parts.file(fingerprint)
                else:
                    partial[parts.path] = parts
    if partial:
        raise MMRError(f"{src}: the shards hold only part of the items of {len(partial)} file(s), e.g. "
                       f"{next(iter(partial))}: the export is incomplete")
    if (src / "skipped.parquet").is_file():
        for r in pq.read_table(src / "skipped.parquet").to_pylist():
            yield EmbeddedFile(FileEntry(r["path"], r["modality"], r["size"], r["mtime_ns"]), None, fingerprint,
                               error=r["error"] or "skipped")


@dataclass
class _Parts:
    """The items of one file read so far (from one or more modalities' shards), with their places in the file."""

    path: str
    first: dict[str, Any]                   # the file's facts, from its first row
    total: int                              # items the file has in all
    ordinals: list[int]
    items: list[ItemRecord]
    vectors: np.ndarray

    @property
    def whole(self) -> bool:
        return len(self.items) >= self.total

    def join(self, other: _Parts) -> _Parts:
        return _Parts(self.path, self.first, self.total, self.ordinals + other.ordinals, self.items + other.items,
                      np.concatenate([self.vectors, other.vectors]))

    def file(self, fingerprint: str) -> EmbeddedFile:
        r = self.first
        order = sorted(range(len(self.items)), key=self.ordinals.__getitem__)
        own_date = r["date_source"] in ("exif", "tag")  # else the mtime stands in, as when indexing
        meta = {"date": r["date"] if own_date else None, "date_source": r["date_source"] if own_date else None,
                "tags": r["tags"].split("\n") if r.get("tags") else []}
        entry = FileEntry(r["path"], r.get("file_modality") or self.items[0].modality, r["size"], r["mtime_ns"])
        return EmbeddedFile(entry, r["sha256"], fingerprint, [self.items[i] for i in order], self.vectors[order],
                            meta=meta)


def _files(rows: list[dict], vecs: np.ndarray, modality: str) -> Iterator[_Parts]:
    """Each file's items in one part (rows by path, then position in the file). Shards written before a file could
    give items of several modalities carry no `file_items`: each file is whole in its modality's part."""
    start = 0
    while start < len(rows):
        end = start
        while end < len(rows) and rows[end]["path"] == rows[start]["path"]:
            end += 1
        r = rows[start]
        span = range(start, end)
        yield _Parts(r["path"], r, int(r.get("file_items") or (end - start)), [rows[i]["ordinal"] for i in span],
                     [ItemRecord(json.loads(rows[i]["locator"]), rows[i]["text"], modality) for i in span],
                     vecs[start:end])
        start = end


def import_shards(src: str | os.PathLike, index: str | os.PathLike, *, device: str = "cpu") -> tuple[Engine, Any]:
    """Build (or add to) the index at `index` from shards: the index's space must be the shards' (a new index
    is created in it). Returns the engine and the `IndexReport`."""
    from .engine import Engine
    from .errors import SpaceMismatchError
    from .space.spec import SpaceSpec

    manifest = read_manifest(src)
    rec = manifest["space"]
    exists = (Path(index).expanduser() / "catalog.sqlite").is_file()
    eng = Engine(index, device=device) if exists else Engine(index, model=SpaceSpec.from_dict(rec["spec"]),
                                                             precision=rec.get("precision"), device=device)
    have = (eng.store.space_record() or {}).get("fingerprint")
    if have != rec["fingerprint"]:
        eng.close()
        raise SpaceMismatchError(
            f"the shards in {src} were made in space {rec['spec']['name']!r} (fingerprint {rec['fingerprint']}), "
            f"the index at {index} is in fingerprint {have}; vectors from different spaces are not comparable")
    report = eng.add_embeddings(read_shards(src, rec["fingerprint"]))
    report.memories = eng.memory.add_embedded(read_memories(src))
    if (Path(src).expanduser() / CACHE_FILE).is_file():
        report.cache_entries = eng.store.cache.merge_from(Path(src).expanduser() / CACHE_FILE)
    return eng, report
