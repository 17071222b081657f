"""The shard layout on disk (clip-retrieval's: an .npy of vectors and a row-aligned parquet per part and modality),
shared by `mmr export` / `mmr import` (`shards`) and the Ray path's staging (`ingest.staging`)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .errors import UsageError

FORMAT = "mmretrieval-shards/1"
EMB_DIR = {"image": "img_emb", "text": "text_emb"}  # clip-retrieval's names; other modalities: <modality>_emb
SHARD_ROWS = 100_000


def emb_dir(modality: str) -> str:
    return EMB_DIR.get(modality, f"{modality}_emb")


def pyarrow():
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
    pa, pq = pyarrow()
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
