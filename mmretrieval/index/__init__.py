from .exact import ExactIndex
from .vector_index import VectorIndex

__all__ = ["VectorIndex", "ExactIndex"]
