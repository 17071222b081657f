"""What a shared space is: a set of towers (each of a registered family, each encoding some modalities into the one
space), its dimension and its metric. Usually an open_clip model for text and images plus an audio tower; any set
of families that covers its modalities, each modality by one tower, forms a space (one without open_clip declares
its "dim").

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
    clip: ClipSpec | None
    audio: AudioSpec | None = None
    metric: str = "cosine"
    description: str = ""
    # More towers, of registered families (`space.towers`), as space.json's "towers" list describes them:
    # ({"name": ..., "family": ..., "modalities": [...], "config": {...}}, ...)
    more_towers: tuple[dict[str, Any], ...] = ()
    # Where the spec came from (registry name, folder, or --model argument); informational.
    source: str = field(default="", compare=False)
    # The space's dimension, declared (required without an open_clip tower, whose model config gives it).
    dim: int | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise SpaceError(f"space {self.name!r}: unknown metric {self.metric!r}; valid: {', '.join(METRICS)}")
        if not self.towers:
            raise SpaceError(f"space {self.name!r} has no tower")
        if self.clip is None and not (isinstance(self.dim, int) and self.dim > 0):
            raise SpaceError(f"space {self.name!r} has no open_clip tower, so it must declare its dimension: "
                             f'"dim": N in its space.json')
        owner: dict[str, str] = {}
        for t in self.towers:
            for m in t.modalities:
                if m in owner:
                    raise SpaceError(f"space {self.name!r}: towers {owner[m]!r} and {t.name!r} both encode {m}; "
                                     f"each modality has one tower")
                owner[m] = t.name

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities the space's towers encode, in the towers' order."""
        return tuple(m for t in self.towers for m in t.modalities)

    @property
    def towers(self) -> tuple[Any, ...]:
        """The space's towers (see `space.towers`): an open_clip model for text and images (`clip`), an audio
        tower (`audio`), and more towers of registered families (`more_towers`)."""
        out = [TowerSpec("clip", "open_clip", ("text", "image"), self.clip)] if self.clip is not None else []
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
            "clip": None if self.clip is None else {"model": self.clip.model, "pretrained": self.clip.pretrained},
            "audio": None if self.audio is None else {"config": self.audio.config, "weights": self.audio.weights},
            "metric": self.metric,
            "source": self.source,
            **({"towers": [dict(t) for t in self.more_towers]} if self.more_towers else {}),
            **({"dim": self.dim} if self.dim is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], base_dir: Path | None = None, source: str = "") -> "SpaceSpec":
        """Build a spec from its JSON form; relative paths are taken relative to `base_dir`."""
        try:
            clip = d.get("clip") if "clip" in d or "towers" in d else d["clip"]
            if clip is None:
                clip_spec = None
            elif "config" in clip:  # a space folder: open_clip config and weights beside space.json
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
                dim=d.get("dim"),
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
