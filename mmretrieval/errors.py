"""Typed errors raised by the library. Only the CLI turns them into messages and exit codes."""
from __future__ import annotations


class MMRError(Exception):
    """Base class of every error mmretrieval raises on purpose."""


class UsageError(MMRError, ValueError):
    """A bad argument: the message names what is valid."""


class SpaceError(MMRError):
    """A space could not be resolved (unknown name, bad config)."""


class MissingWeightsError(SpaceError):
    """Weights for a space are not available locally and could not be fetched."""


class WeightsMismatchError(SpaceError):
    """A weights file does not fit the architecture its space describes."""


class UnsupportedPrecisionError(SpaceError):
    """A tower cannot compute in the precision asked for (int8 needs ONNX Runtime and an exportable model, and
    must keep the tower's vectors close to fp32)."""


class SpaceMismatchError(MMRError):
    """An index was opened or queried with a different space or metric than it was built with."""


class IndexNotFoundError(MMRError):
    """The index directory does not hold an index."""


class ItemNotFoundError(MMRError):
    """No indexed item has this id."""


class MemoryNotFoundError(ItemNotFoundError):
    """No memory has this id (in the caller's scope)."""


class IndexLockedError(MMRError):
    """Another process is writing to the index."""


class DiskFullError(MMRError):
    """The disk filled up, or would: what was committed is intact, and the message says how to go on."""


class DecodeError(MMRError):
    """A file could not be read or decoded; the message is the reason shown to the user."""


class UnsupportedModalityError(DecodeError):
    """The space has no tower for this modality."""
