"""mmretrieval: search photos, recordings and documents by meaning, in one shared CLIP-style space."""
import logging

from .engine import Engine, Hit
from .errors import (DecodeError, IndexLockedError, IndexNotFoundError, MissingWeightsError, MMRError, SpaceError,
                     SpaceMismatchError, UsageError, WeightsMismatchError)
from .ingest.distributed import RayOptions
from .ingest.indexer import IndexReport
from .modalities import Modality, register_modality
from .query import Filters, parse_filters
from .space.registry import list_spaces, register_space, resolve_model_arg
from .space.spec import AudioSpec, ClipSpec, SpaceSpec

__version__ = "0.1.0"

# A library logs; the application decides what is shown (the CLI shows it with MMR_DEBUG=1).
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "Engine", "Hit", "IndexReport", "SpaceSpec", "ClipSpec", "AudioSpec", "register_space", "list_spaces",
    "resolve_model_arg", "MMRError", "UsageError", "SpaceError", "MissingWeightsError", "SpaceMismatchError",
    "IndexNotFoundError", "IndexLockedError", "DecodeError", "WeightsMismatchError", "Modality", "register_modality",
    "Filters", "parse_filters", "RayOptions",
]
