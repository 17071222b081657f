"""open_clip's registry (model names, pretrained tags and where their weights come from), read without
importing open_clip where it can be.

`mmr spaces` asks which tags exist and where their weights come from; importing open_clip for that (~2 s, with
torch and torchvision) made the command take 6 s. When this package imports open_clip for its registry, it
writes what the registry holds to the project's cache (``MMR_CACHE``/open_clip-VERSION.json); while open_clip's
version is the same, later processes read that file instead.
"""
from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..index.segments import atomic_write
from .cache import cache_root

FORMAT = 1


def open_clip_version() -> str | None:
    """open_clip's version, read from its package without importing it."""
    found = importlib.util.find_spec("open_clip")
    if found is None or not found.submodule_search_locations:
        return None
    try:
        text = (Path(list(found.submodule_search_locations)[0]) / "version.py").read_text()
    except OSError:
        return None
    m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text)
    return m.group(1) if m else None


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples open_clip's configs hold (mean, std)."""
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class Catalog:
    models: tuple[str, ...]                       # open_clip.list_models(), in its order
    pretrained: dict[str, dict[str, dict]]        # model -> tag -> config, in open_clip's order

    def tags(self, model: str) -> list[str]:
        """open_clip.list_pretrained_tags_by_model"""
        return list(self.pretrained.get(model, {}))

    def cfg(self, model: str, tag: str) -> dict[str, Any]:
        """open_clip.get_pretrained_cfg (tags compared as open_clip cleans them)"""
        cfg = self.pretrained.get(model, {}).get(tag.lower().replace("-", "_"), {})
        return {k: _tuples(v) for k, v in cfg.items()}


def _path(version: str) -> Path:
    return cache_root() / f"open_clip-{version}.json"


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    version = open_clip_version()
    if version is not None:
        try:
            data = json.loads(_path(version).read_text())
            if data.get("format") == FORMAT and data.get("version") == version:
                return Catalog(tuple(data["models"]), data["pretrained"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    import open_clip

    live = Catalog(tuple(open_clip.list_models()),
                   {m: {t: dict(open_clip.get_pretrained_cfg(m, t)) for t in open_clip.list_pretrained_tags_by_model(m)}
                    for m in dict.fromkeys(m for m, _ in open_clip.list_pretrained())})
    if version is not None:
        record = {"format": FORMAT, "version": version, "models": list(live.models), "pretrained": live.pretrained}
        try:
            _path(version).parent.mkdir(parents=True, exist_ok=True)
            atomic_write(_path(version), lambda tmp: Path(tmp).write_text(json.dumps(record)))
        except (OSError, TypeError, ValueError):
            pass  # the snapshot is an optimisation only
    return live
