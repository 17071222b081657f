"""The vector index: one FAISS index of every modality's vectors (`vector_index`), its type chosen as a pure function
of count, dimension and memory (`choose`), built from parts (`build`), written as a base and deltas (`segments`),
read back as a stream (`vectors_stream`). Loaded at first use: `choose` alone imports neither faiss nor torch."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["VectorIndex", "ExactIndex"]


def __getattr__(name: str) -> Any:
    if name == "VectorIndex":
        from .vector_index import VectorIndex

        return VectorIndex
    if name == "ExactIndex":
        from .exact import ExactIndex

        return ExactIndex
    raise AttributeError(f"module 'mmretrieval.index' has no attribute {name!r}")


if TYPE_CHECKING:
    from .exact import ExactIndex
    from .vector_index import VectorIndex
