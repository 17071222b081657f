"""What a shared space is: an open_clip model + weights, an optional audio tower, and the metric.

A `SpaceSpec` is pure data. Its fingerprint identifies the vectors it makes: two specs with
the same fingerprint put the same input at the same point, so an index built by one can be
queried by the other. Anything that changes vectors belongs in the fingerprint.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import SpaceError

METRICS = ("cosine",)
SPACE_FILE = "space.json"
SPACE_FORMAT = "mmretrieval-space/1"



@dataclass(frozen=True)
class TowerSpec:
    """One tower of a space: its name in the space, its family, the modalities it encodes, its config."""

    name: str
    family: str
    modalities: tuple[str, ...]
    config: Any  # the family's own description (ClipSpec for open_clip, AudioSpec for audio)


@dataclass(frozen=True)
class ClipSpec:
    """The text and image towers.

    `model` is an open_clip model name (e.g. ``ViT-B-32``) or ``local-dir:/abs/dir`` for a folder
    holding ``open_clip_config.json`` and its weights. `pretrained` is an open_clip pretrained tag
    or an absolute checkpoint path (ignored for ``local-dir:`` models, whose weights sit beside the
    config).
    """

    model: str
    pretrained: str | None = None

    @property
    def local_dir(self) -> Path | None:
        return Path(self.model[len("local-dir:"):]) if self.model.startswith("local-dir:") else None


@dataclass(frozen=True)
class AudioSpec:
    """An audio tower that projects into the space: an architecture config and a weights file."""

    config: dict[str, Any]
    # A file path, or a cached download: {"cache": REL_PATH, "url": URL, "sha256": HEX|None, "env": VAR}.
    weights: str | dict[str, Any] | None = None

    @property
    def sample_rate(self) -> int:
        return int(self.config["sample_rate"])

    @property
    def window_s(self) -> float:
        return float(self.config.get("window_s", 5.0))

    @property
    def hop_s(self) -> float:
        return float(self.config.get("hop_s", self.window_s))


@dataclass(frozen=True)
class SpaceSpec:
    name: str
    clip: ClipSpec
    audio: AudioSpec | None = None
    metric: str = "cosine"
    description: str = ""
    # More towers, of registered families (`space.towers`), as space.json's "towers" list describes them:
    # ({"name": ..., "family": ..., "modalities": [...], "config": {...}}, ...)
    more_towers: tuple[dict[str, Any], ...] = ()
    # Where the spec came from (registry name, folder, or --model argument); informational.
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise SpaceError(f"space {self.name!r}: unknown metric {self.metric!r}; valid: {', '.join(METRICS)}")

    @property
    def modalities(self) -> tuple[str, ...]:
        return ("text", "image", "audio") if self.audio is not None else ("text", "image")

    @property
    def towers(self) -> tuple[Any, ...]:
        """The space's towers (see `space.towers`): an open_clip model for text and images, and an
        optional audio tower. Today's space.json files describe exactly these two."""
        out = [TowerSpec("clip", "open_clip", ("text", "image"), self.clip)]
        if self.audio is not None:
            out.append(TowerSpec("audio", "audio", ("audio",), self.audio))
        out += [TowerSpec(t["name"], t["family"], tuple(t.get("modalities", ())), t.get("config", {}))
                for t in self.more_towers]
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SPACE_FORMAT,
            "name": self.name,
            "description": self.description,
            "clip": {"model": self.clip.model, "pretrained": self.clip.pretrained},
            "audio": None if self.audio is None else {"config": self.audio.config, "weights": self.audio.weights},
            "metric": self.metric,
            "source": self.source,
            **({"towers": [dict(t) for t in self.more_towers]} if self.more_towers else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], base_dir: Path | None = None, source: str = "") -> "SpaceSpec":
        """Build a spec from its JSON form; relative paths are taken relative to `base_dir`."""
        try:
            clip = d["clip"]
            if "config" in clip:  # a space folder: open_clip config and weights beside space.json
                if base_dir is None:
                    raise SpaceError("a space with a relative clip config needs the folder it lives in")
                model = "local-dir:" + str((base_dir / Path(clip["config"]).parent).resolve())
                clip_spec = ClipSpec(model=model, pretrained=None)
            else:
                clip_spec = ClipSpec(model=clip["model"], pretrained=_abs(clip.get("pretrained"), base_dir, tag_ok=True))
            audio = d.get("audio")
            audio_spec = None
            if audio:
                w = audio.get("weights")
                audio_spec = AudioSpec(config=dict(audio["config"]), weights=w if isinstance(w, dict) else _abs(w, base_dir))
            return cls(
                name=str(d.get("name") or "unnamed"),
                clip=clip_spec,
                audio=audio_spec,
                metric=d.get("metric", "cosine"),
                description=d.get("description", ""),
                more_towers=tuple(_tower_entry(t) for t in d.get("towers") or ()),
                source=source or d.get("source", ""),
            )
        except KeyError as e:
            raise SpaceError(f"space config is missing the field {e.args[0]!r}") from None

    def with_source(self, source: str) -> "SpaceSpec":
        return replace(self, source=source)


def _tower_entry(t: Any) -> dict[str, Any]:
    if not isinstance(t, dict) or not {"name", "family"} <= set(t):
        raise SpaceError(f"each entry of a space's 'towers' needs a name and a family, got {t!r}")
    if t["name"] in ("clip", "audio"):
        raise SpaceError(f"tower name {t['name']!r} is taken by the space's own clip/audio towers")
    return dict(t)


def _abs(value: str | None, base_dir: Path | None, tag_ok: bool = False) -> str | None:
    """Resolve a weights reference: keep pretrained tags, make file paths absolute."""
    if value is None:
        return None
    p = Path(os.path.expanduser(value))
    if p.is_absolute():
        return str(p)
    if base_dir is not None and (base_dir / p).exists():
        return str((base_dir / p).resolve())
    if tag_ok and "/" not in value and not p.suffix:
        return value  # an open_clip pretrained tag
    if base_dir is not None:
        return str((base_dir / p).resolve())
    return str(p.resolve())


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint_of(identity: dict[str, Any]) -> str:
    """A short stable hash of everything that determines where vectors land."""
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:16]
