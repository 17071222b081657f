"""The project's cache folder: downloaded weights, ONNX exports, measured choices, open_clip's registry."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``MMR_CACHE``, else ~/.cache/mmretrieval."""
    return Path(os.environ.get("MMR_CACHE", os.path.expanduser("~/.cache/mmretrieval")))
