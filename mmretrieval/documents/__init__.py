"""Document formats: each turns a file into text blocks (with their page, section or time) and figures, which
the text modality makes into passages and image items. One module per format, one registry (see `base`)."""
from .base import (Block, DocumentFormat, Figure, Limits, Remark, Text, blocks, extensions, format_of, formats,
                   place, register_format)
from . import plain, html, subtitles, pdf, docx, odt, epub  # noqa: E402,F401  the built-ins register themselves

__all__ = ["Block", "DocumentFormat", "Figure", "Limits", "Remark", "Text", "blocks", "extensions", "format_of",
           "formats", "place", "register_format"]
