"""The modalities the engine indexes and searches: one module each, one registry (see `base`).

Adding a modality = one module that builds a `Modality` and calls `register_modality` (README: Extending).
"""
from .base import (DecodeContext, Item, Modality, Note, decoded_items, get_modality, item_modality_names, modalities,
                   modality_names, modality_of, register_modality, unregister_modality)
from . import text, image, audio, video  # noqa: E402,F401  the built-ins register themselves, in this order

__all__ = ["DecodeContext", "Item", "Modality", "Note", "decoded_items", "get_modality", "item_modality_names", "modalities",
           "modality_names", "modality_of", "register_modality", "unregister_modality"]
