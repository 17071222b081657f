"""The engine: one facade (`Engine`, in `facade.py`) over parts with one job each: `writing` (every write, under
the writer's lock), `policy` (the vector index's type, how files are cut into items), `searching` (every kind of
search, `Hit`), `reading` (vectors as a stream, statistics, the consistency check)."""
from .facade import DEFAULT_SPACE, Engine
from .searching import Hit
from .writing import STAGING_DIR

__all__ = ["Engine", "Hit", "DEFAULT_SPACE", "STAGING_DIR"]
