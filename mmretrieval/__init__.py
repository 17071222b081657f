"""mmretrieval: search photos, recordings and documents by meaning, in one shared CLIP-style space.

The names below are imported at first use, so that `import mmretrieval` (and `mmr --help`) loads neither torch
nor faiss until something needs them.
"""
from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it from here)

# A library logs; the application decides what is shown (the CLI shows it with MMR_DEBUG=1).
logging.getLogger(__name__).addHandler(logging.NullHandler())

_LAZY = {
    "Engine": ".engine", "Hit": ".engine", "IndexReport": ".ingest.indexer", "RayOptions": ".options",
    "Modality": ".modalities", "register_modality": ".modalities", "Filters": ".query", "parse_filters": ".query",
    "list_spaces": ".space.registry", "register_space": ".space.registry", "resolve_model_arg": ".space.registry",
    "SpaceSpec": ".space.spec", "ClipSpec": ".space.spec", "AudioSpec": ".space.spec",
    "Memory": ".memory", "Remembered": ".memory", "Scope": ".memory",
    **{name: ".errors" for name in ("MMRError", "UsageError", "SpaceError", "MissingWeightsError", "SpaceMismatchError",
                                    "IndexNotFoundError", "IndexLockedError", "DecodeError", "WeightsMismatchError",
                                    "ItemNotFoundError", "MemoryNotFoundError", "DiskFullError")},
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mmretrieval' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:
    from .engine import Engine, Hit
    from .errors import (DecodeError, DiskFullError, IndexLockedError, IndexNotFoundError, ItemNotFoundError, MemoryNotFoundError,
                         MissingWeightsError, MMRError, SpaceError, SpaceMismatchError, UsageError, WeightsMismatchError)
    from .memory import Memory, Remembered, Scope
    from .ingest.indexer import IndexReport
    from .modalities import Modality, register_modality
    from .options import RayOptions
    from .query import Filters, parse_filters
    from .space.registry import list_spaces, register_space, resolve_model_arg
    from .space.spec import AudioSpec, ClipSpec, SpaceSpec
