"""Media for the page: content types, and the thumbnail cache beside the index (each modality makes its
own thumbnails: see `mmretrieval.modalities`)."""
from __future__ import annotations

import mimetypes
import os
from pathlib import Path


def media_type(path: str) -> str:
    from ..modalities import modalities

    ext = os.path.splitext(path)[1].lower()
    known = next((m.media_types[ext] for m in modalities() if ext in m.media_types), None)
    return known or mimetypes.guess_type(path)[0] or "application/octet-stream"


def cached(cache_dir: Path, key: str, make) -> bytes:
    cache_dir.mkdir(parents=True, exist_ok=True)
    f = cache_dir / key
    if f.is_file():
        return f.read_bytes()
    data = make()
    tmp = f.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, f)
    return data
