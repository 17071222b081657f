"""Embedded files kept on disk until the single writer has committed them: what makes an embed step that runs
elsewhere (on a Ray cluster) resumable. A driver killed before its commit, or a run whose workers were lost,
finds the shards already written and does not embed those files again.

    STAGE/manifest.json                                   the space record; the shards written so far
    STAGE/files/files_<key>.parquet                       one row per file of shard <key>: its outcome (skip
                                                          reason, note, reuse), hash, date, tags, and where its
                                                          items are (per modality: first row, places in the file)
    STAGE/image/img_emb/img_emb_<key>.npy                 the shard's image vectors, float32 [n, dim]
    STAGE/image/metadata/metadata_<key>.parquet           row-aligned: image_path, path, sha256, locator, ...
    (the same for text and audio)

The per-modality parts are clip-retrieval's layout (`shards.write_part`), so autofaiss reads `image/img_emb`
as it is and `mmr import STAGE` builds an index from it. The files table is written last: a shard whose
files table exists is whole. A shard is looked up per file by (path, size, mtime_ns, modality), so a
re-planned run (some files committed meanwhile, shards cut differently) still finds what was embedded.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..catalog import ItemRecord, item_modality
from ..options import ItemOptions
from ..shard_format import FORMAT, part_paths, pyarrow, write_part
from .embed import EmbeddedFile
from .walk import FileEntry

LAYOUT = 2  # 2: a file's items may be of several modalities (its row's "spans")
FileKey = tuple[str, int, int, str]  # path, size, mtime_ns, modality: a file as the plan saw it


def file_key(e: FileEntry) -> FileKey:
    return (e.path, e.size, e.mtime_ns, e.modality)


@dataclass
class Staging:
    """The staged shards of one index for one space and one way of cutting files into items."""

    root: Path
    space: dict[str, Any]      # the index's space record (fingerprint, spec, dim, ...)
    items: ItemOptions

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self._where: dict[FileKey, str] = {}
        self._loaded: dict[str, dict[FileKey, EmbeddedFile]] = {}
        self.shards: list[str] = []
        self.parts: dict[str, list[str]] = {}  # modality -> its .npy files (the manifest's "shards", for import)
        manifest = self.root / "manifest.json"
        if manifest.is_file():
            m = json.loads(manifest.read_text())
            if (m.get("space", {}).get("fingerprint") != self.space["fingerprint"]
                    or m.get("item_options") != self.items.to_dict() or m.get("layout") != LAYOUT):
                self.clear()  # made in another space, cut another way or laid out by another version: of no use
            else:
                self.shards = [k for k in m.get("staged", []) if self._files_path(k).is_file()]
                self.parts = {mod: [p for p in names if (self.root / p).is_file()]
                              for mod, names in m.get("shards", {}).items()}
                self._adopt_unlisted()
        _, pq = pyarrow()
        for k in self.shards:
            for r in pq.read_table(self._files_path(k), columns=["path", "size", "mtime_ns", "modality"]).to_pylist():
                self._where[(r["path"], r["size"], r["mtime_ns"], r["modality"])] = k

    def _adopt_unlisted(self) -> None:
        """Shards whose files table was written but not yet listed (a run killed between the two writes): the
        files table comes last, so such a shard is whole, and this space's (the manifest before it says so)."""
        listed = set(self.shards)
        for path in sorted((self.root / "files").glob("files_*.parquet")):
            key = path.stem[len("files_"):]
            if key in listed:
                continue
            self.shards.append(key)
            for modality in sorted(d.name for d in self.root.iterdir() if d.is_dir() and d.name != "files"):
                emb = part_paths(self.root, modality, key)[0]
                if emb.is_file():
                    self.parts.setdefault(modality, []).append(str(emb.relative_to(self.root)))

    @property
    def fingerprint(self) -> str:
        return self.space["fingerprint"]

    def _files_path(self, key: str) -> Path:
        return self.root / "files" / f"files_{key}.parquet"

    def find(self, e: FileEntry) -> EmbeddedFile | None:
        """The staged outcome of this file as planned (same size and mtime), or None."""
        key = self._where.get(file_key(e))
        if key is None:
            return None
        if key not in self._loaded:
            self._loaded = {key: {file_key(f.entry): f for f in self.read(key)}}  # one shard held at a time
        return self._loaded[key].get(file_key(e))

    def write(self, key: str, files: list[EmbeddedFile]) -> None:
        """Stage one shard (vectors and items per modality first, the files table last)."""
        pa, pq = pyarrow()
        per: dict[str, tuple[list[dict], list[np.ndarray]]] = {}
        rows = []
        for f in files:
            e, meta = f.entry, f.meta or {}
            spans: dict[str, list[int]] = {}  # modality -> [first row in its part, then the items' places in the file]
            items = f.items if f.error is None and not f.reuse else []
            for i, item in enumerate(items):
                m = item_modality(item, e.modality)
                rows_m, vecs_m = per.setdefault(m, ([], []))
                spans.setdefault(m, [len(rows_m)]).append(i)
                rows_m.append({"path": e.path, "sha256": f.hash, "ordinal": i, "locator": item[0], "text": item[1],
                               "size": e.size, "mtime_ns": e.mtime_ns, "date": meta.get("date"),
                               "date_source": meta.get("date_source"), "tags": "\n".join(meta.get("tags") or ()),
                               "file_modality": e.modality, "file_items": len(items)})
                vecs_m.append(np.asarray(f.vectors[i], np.float32))
            rows.append({"path": e.path, "modality": e.modality, "size": e.size, "mtime_ns": e.mtime_ns,
                         "sha256": f.hash, "error": f.error, "note": f.note, "reuse": f.reuse,
                         "spans": json.dumps(spans), "date": meta.get("date"),
                         "date_source": meta.get("date_source"), "tags": "\n".join(meta.get("tags") or ()),
                         "fingerprint": f.fingerprint})
        for modality, (rows_m, vecs_m) in per.items():
            if rows_m:
                emb = write_part(self.root, modality, key, rows_m, np.stack(vecs_m))
                self.parts.setdefault(modality, []).append(str(emb.relative_to(self.root)))
        path = self._files_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)
        self.shards.append(key)
        for f in files:
            self._where[file_key(f.entry)] = key
        self._write_manifest()

    def read(self, key: str) -> list[EmbeddedFile]:
        """The files of one staged shard, in the order they were written."""
        _, pq = pyarrow()
        parts: dict[str, tuple[np.ndarray, list[dict]]] = {}
        out = []
        for r in pq.read_table(self._files_path(key)).to_pylist():
            e = FileEntry(r["path"], r["modality"], r["size"], r["mtime_ns"])
            if r["error"] is not None:
                out.append(EmbeddedFile(e, None, r["fingerprint"], error=r["error"]))
                continue
            if r["reuse"]:
                out.append(EmbeddedFile(e, r["sha256"], r["fingerprint"], reuse=True))
                continue
            spans = json.loads(r["spans"])
            n = sum(len(span) - 1 for span in spans.values())
            items: list[ItemRecord | None] = [None] * n
            vecs = np.empty((n, int(self.space["dim"])), np.float32)
            for m, (first, *places) in spans.items():
                if m not in parts:
                    emb, meta = part_paths(self.root, m, key)
                    part_vecs, rows_m = np.load(emb), pq.read_table(meta, columns=["locator", "text"]).to_pylist()
                    if len(rows_m) != len(part_vecs):
                        raise OSError(f"{emb} holds {len(part_vecs)} vectors but {meta} {len(rows_m)} rows")
                    parts[m] = (part_vecs, rows_m)
                part_vecs, rows_m = parts[m]
                for j, place in enumerate(places):
                    row = rows_m[first + j]
                    items[place] = ItemRecord(json.loads(row["locator"]), row["text"], m)
                    vecs[place] = part_vecs[first + j]
            out.append(EmbeddedFile(
                e, r["sha256"], r["fingerprint"], items, vecs, note=r["note"],
                meta={"date": r["date"], "date_source": r["date_source"],
                      "tags": r["tags"].split("\n") if r["tags"] else []}))
        return out

    def _write_manifest(self) -> None:
        manifest = {"format": FORMAT, "layout": LAYOUT, "space": self.space, "item_options": self.items.to_dict(),
                    "staged": self.shards, "shards": self.parts, "items": {}, "skipped": 0}
        tmp = self.root / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=2))
        tmp.replace(self.root / "manifest.json")

    def clear(self) -> None:
        """Forget every staged shard (after they are committed, or when they cannot serve this index)."""
        if self.root.exists():
            shutil.rmtree(self.root)
        self.shards, self.parts, self._where, self._loaded = [], {}, {}, {}
