"""Options of a run that are plain data: made by the CLI, the server or a Python caller, read by the engine
and the ingest steps (no layer below has to import one above to know them)."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .errors import UsageError


@dataclass(frozen=True)
class RayOptions:
    """How `mmr index --ray` uses the cluster."""

    address: str | None = None       # None: $RAY_ADDRESS, else a new local Ray; "auto": the cluster `ray start`
                                     # began on this machine; "host:port": that cluster's head
    actors: int | None = None        # encoder actors; default: the cluster's CPUs / cpus_per_actor
    cpus_per_actor: float = 1.0      # fractional is fine (several actors share a CPU)
    gpus_per_actor: float = 0.0
    files_per_shard: int | None = None  # default: about SHARDS_PER_ACTOR shards per actor, at most 1000 files
    keep_shards: bool = False        # keep the staged shards after the commit (clip-retrieval's layout)

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise UsageError(f"--ray-actors must be at least 1, got {self.actors}")
        if not self.cpus_per_actor > 0:
            raise UsageError(f"CPUs per actor must be positive, got {self.cpus_per_actor}")
        if self.gpus_per_actor < 0:
            raise UsageError(f"GPUs per actor cannot be negative, got {self.gpus_per_actor}")
        if self.files_per_shard is not None and self.files_per_shard < 1:
            raise UsageError(f"files per shard must be at least 1, got {self.files_per_shard}")


@dataclass(frozen=True)
class ItemOptions:
    """How files become items: settings of the whole index, recorded in its catalog when it is first given one and
    used by every later run, so that a collection is never cut two ways. Each field belongs to one modality (named
    first); decoders read theirs from `DecodeContext.options`. A new setting is one field here."""

    audio_pooled: bool = False  # audio: one item per file (the mean of its windows' vectors) instead of one per window
    # image (and documents' figures): which pictures OCR reads, when the ocr extra is installed: "scans" (scanned
    # and drawn pages of documents), "all" (also photos and figures: ~10x the time of the image tower), "off".
    ocr: str = "scans"

    OCR_CHOICES = ("off", "scans", "all")

    META_KEY = "item_options"

    def __post_init__(self) -> None:
        if self.ocr not in self.OCR_CHOICES:
            raise UsageError(f"unknown OCR setting {self.ocr!r}; valid: {', '.join(self.OCR_CHOICES)}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "ItemOptions":
        d = dict(d or {})
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise UsageError(f"unknown item option {unknown[0]!r}; valid: {', '.join(names)}")
        return cls(**d)

    def differences(self, other: "ItemOptions") -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]
