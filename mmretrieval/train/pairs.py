"""Pair files for training and evaluation: JSONL or CSV rows of image/audio path + caption (+ label).

Accepted columns: ``image``, ``audio``, ``caption`` (or ``text``), ``label`` (optional attributes key used
for precision@k), and for audio–image alignment rows with both ``audio`` and ``image``. Relative paths
are relative to the pairs file's folder.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError


@dataclass(frozen=True)
class Pair:
    image: str | None = None
    audio: str | None = None
    caption: str | None = None
    label: str | None = None


def read_pairs(path: str | Path) -> list[Pair]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"pairs file not found: {path}")
    base = path.parent
    rows: list[dict] = []
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                raise UsageError(f"{path}:{n}: not a JSON object: {e}") from None
    elif path.suffix.lower() in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    else:
        raise UsageError(f"pairs file must be .jsonl or .csv, got {path.name}")
    out = []
    for n, r in enumerate(rows, 1):
        cap = r.get("caption", r.get("text"))
        img, aud = r.get("image") or None, r.get("audio") or None
        if not img and not aud:
            raise UsageError(f"{path} row {n}: needs an 'image' or 'audio' column")
        if cap is None and not (img and aud):
            raise UsageError(f"{path} row {n}: needs a 'caption' (or both 'audio' and 'image')")
        out.append(Pair(image=_abs(img, base), audio=_abs(aud, base), caption=cap, label=r.get("label") or None))
    if not out:
        raise UsageError(f"{path} holds no pairs")
    return out


def _abs(p: str | None, base: Path) -> str | None:
    if not p:
        return None
    q = Path(p).expanduser()
    return str(q if q.is_absolute() else (base / q).resolve())
