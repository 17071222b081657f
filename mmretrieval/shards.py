"""Embedding shards in clip-retrieval's layout: `mmr export` writes an index's vectors and metadata as files
other tools read, `mmr import` builds an index from such shards (vectors are not computed again).

    DIR/manifest.json                                  the space record (fingerprint, dim, metric), counts
    DIR/image/img_emb/img_emb_<run>_<k>.npy            float32 [n, dim], L2-normalised
    DIR/image/metadata/metadata_<run>_<k>.parquet      row-aligned: image_path, path, sha256, locator, ...
    DIR/text/text_emb/text_emb_<run>_<k>.npy           (and text/metadata/...)
    DIR/audio/audio_emb/audio_emb_<run>_<k>.npy        (and audio/metadata/...)
    DIR/skipped.parquet                                files that were skipped, with the reason

`image_path` is the column clip-retrieval and autofaiss expect beside `img_emb`; the other columns carry what
the catalog needs to rebuild an index (file size, mtime, date, tags; each item's locator and text). Needs
pyarrow (the `shards` extra).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import MMRError, UsageError
from .ingest.embed import EmbeddedFile
from .ingest.walk import FileEntry

if TYPE_CHECKING:
    from .engine import Engine

FORMAT = "mmretrieval-shards/1"
EMB_DIR = {"image": "img_emb", "text": "text_emb"}  # clip-retrieval's names; other modalities: <modality>_emb
SHARD_ROWS = 100_000


def emb_dir(modality: str) -> str:
    return EMB_DIR.get(modality, f"{modality}_emb")


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError("shards are parquet files: pip install 'mmretrieval[shards]' (pyarrow)") from None
    return pa, pq


def part_paths(out: Path, modality: str, name: str) -> tuple[Path, Path]:
    """(embeddings .npy, row-aligned metadata .parquet) of the part called `name` of a modality."""
    return (out / modality / emb_dir(modality) / f"{emb_dir(modality)}_{name}.npy",
            out / modality / "metadata" / f"metadata_{name}.parquet")


def write_part(out: Path, modality: str, name: str, rows: list[dict], vecs: np.ndarray) -> Path:
    """One part of a modality: the vectors and their rows (`image_path` first for images, as clip-retrieval
    writes it; `locator` as JSON). Each file is written under a temporary name and renamed, so a part is
    either whole or absent. Returns the .npy path."""
    pa, pq = _pyarrow()
    emb, meta = part_paths(out, modality, name)
    emb.parent.mkdir(parents=True, exist_ok=True)
    meta.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([{**({"image_path": r["path"]} if modality == "image" else {}), **r,
                                   "locator": json.dumps(r["locator"])} for r in rows])
    tmp_meta, tmp_emb = meta.with_suffix(".parquet.tmp"), emb.with_suffix(".tmp.npy")
    pq.write_table(table, tmp_meta)
    np.save(tmp_emb, np.ascontiguousarray(vecs, np.float32))
    os.replace(tmp_meta, meta)
    os.replace(tmp_emb, emb)
    return emb


def export_shards(engine: Engine, out: str | os.PathLike, *, run: int = 0, shard_rows: int = SHARD_ROWS) -> dict[str, Any]:
    """Write every item's vector and metadata under `out` (which must be empty or new). Returns the manifest."""
    pa, pq = _pyarrow()
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty; export into a new or empty folder")
    cat, vectors = engine.store.catalog, engine.store.vectors
    counts: dict[str, int] = {}
    shards: dict[str, list[str]] = {}

    def write(modality: str, part: list[dict]) -> None:
        k = len(shards.get(modality, []))
        vecs = vectors.reconstruct(np.array([r["item_id"] for r in part], np.int64)).astype(np.float32)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)  # quantised indexes drift
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
    skipped = cat.skipped_rows()
    if skipped:
        pq.write_table(pa.Table.from_pylist(skipped), out / "skipped.parquet")
    manifest = {"format": FORMAT, "space": engine.store.space_record(), "items": counts, "skipped": len(skipped),
                "shards": shards}
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def read_manifest(src: str | os.PathLike) -> dict[str, Any]:
    path = Path(src).expanduser() / "manifest.json"
    if not path.is_file():
        raise UsageError(f"{src} holds no manifest.json: not a folder written by `mmr export`")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise UsageError(f"{path}: unknown shard format {manifest.get('format')!r} (expected {FORMAT})")
    return manifest


def read_shards(src: str | os.PathLike, fingerprint: str) -> Iterator[EmbeddedFile]:
    """The files of the shards under `src`, as embedded files of the space with this fingerprint (skips too)."""
    _, pq = _pyarrow()
    src = Path(src).expanduser()
    manifest = read_manifest(src)
    for modality, names in manifest["shards"].items():
        for name in names:
            emb = src / name
            meta = emb.parent.parent / "metadata" / emb.name.replace(emb_dir(modality), "metadata", 1).replace(
                ".npy", ".parquet")
            vecs = np.load(emb)
            rows = pq.read_table(meta).to_pylist()
            if len(rows) != vecs.shape[0]:
                raise MMRError(f"{emb} holds {vecs.shape[0]} vectors but {meta} {len(rows)} rows: the shard is damaged")
            yield from _files(rows, vecs.astype(np.float32), modality, fingerprint)
    if (src / "skipped.parquet").is_file():
        for r in pq.read_table(src / "skipped.parquet").to_pylist():
            yield EmbeddedFile(FileEntry(r["path"], r["modality"], r["size"], r["mtime_ns"]), None, fingerprint,
                               error=r["error"] or "skipped")


def _files(rows: list[dict], vecs: np.ndarray, modality: str, fingerprint: str) -> Iterator[EmbeddedFile]:
    start = 0
    while start < len(rows):
        end = start
        while end < len(rows) and rows[end]["path"] == rows[start]["path"]:
            end += 1
        r = rows[start]
        part = sorted(range(start, end), key=lambda i: rows[i]["ordinal"])
        own_date = r["date_source"] in ("exif", "tag")  # else the mtime stands in, as when indexing
        meta = {"date": r["date"] if own_date else None, "date_source": r["date_source"] if own_date else None,
                "tags": r["tags"].split("\n") if r.get("tags") else []}
        yield EmbeddedFile(FileEntry(r["path"], modality, r["size"], r["mtime_ns"]), r["sha256"], fingerprint,
                           [(json.loads(rows[i]["locator"]), rows[i]["text"]) for i in part], vecs[part], meta=meta)
        start = end


def import_shards(src: str | os.PathLike, index: str | os.PathLike) -> tuple[Engine, Any]:
    """Build (or add to) the index at `index` from shards: the index's space must be the shards' (a new index
    is created in it). Returns the engine and the `IndexReport`."""
    from .engine import Engine
    from .errors import SpaceMismatchError
    from .space.spec import SpaceSpec

    manifest = read_manifest(src)
    rec = manifest["space"]
    exists = (Path(index).expanduser() / "catalog.sqlite").is_file()
    eng = Engine(index) if exists else Engine(index, model=SpaceSpec.from_dict(rec["spec"]),
                                              precision=rec.get("precision"))
    have = (eng.store.space_record() or {}).get("fingerprint")
    if have != rec["fingerprint"]:
        eng.close()
        raise SpaceMismatchError(
            f"the shards in {src} were made in space {rec['spec']['name']!r} (fingerprint {rec['fingerprint']}), "
            f"the index at {index} is in fingerprint {have}; vectors from different spaces are not comparable")
    return eng, eng.add_embeddings(read_shards(src, rec["fingerprint"]))
