"""What the adapters share: a hit or a note as text and metadata, the shape every framework's document has."""
from __future__ import annotations

from typing import Any

from ..engine import Hit
from ..memory import Memory


def hit_text(h: Hit) -> str:
    """A passage's own text; a picture, a sound or a video moment as a line a language model can read (what it
    is and where), since the model cannot see the vector."""
    if h.text:
        return h.text
    where = f" {h.where}" if h.where else ""
    kind = h.file_modality if h.file_modality and h.file_modality != h.modality else h.modality
    return f"[{kind}{'' if kind == h.modality else f' {h.modality}'}] {h.path}{where}"


def hit_metadata(h: Hit) -> dict[str, Any]:
    out = {k: v for k, v in h.to_dict().items() if k != "text" and v is not None}
    out.pop("moments", None)
    out["source"] = h.path
    return out


def note_metadata(m: Memory) -> dict[str, Any]:
    return {k: v for k, v in m.to_dict().items() if k != "text"}
