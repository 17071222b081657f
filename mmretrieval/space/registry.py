"""Named spaces, and turning a ``--model`` argument into a `SpaceSpec`.

``--model`` accepts, in this order: a registered space name; a folder holding ``space.json``
(or an open_clip ``open_clip_config.json`` with its weights); ``OPENCLIP_MODEL[:TAG_OR_CHECKPOINT]``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import SpaceError
from .spec import SPACE_FILE, ClipSpec, SpaceSpec

_CONFIG_DIR = Path(__file__).parent / "configs"
_REGISTRY: dict[str, SpaceSpec] = {}
_builtin_loaded = False


def _load_builtin() -> None:
    global _builtin_loaded
    if _builtin_loaded:
        return
    _builtin_loaded = True
    for f in sorted(_CONFIG_DIR.glob("*.json")):
        d = json.loads(f.read_text())
        _REGISTRY.setdefault(d["name"], SpaceSpec.from_dict(d, base_dir=f.parent, source=f"registry:{d['name']}"))
    # Spaces shipped as folders (space.json + weights), e.g. the small trained one in assets/models.
    for root in _model_dirs():
        for sub in sorted(p for p in root.iterdir() if (p / SPACE_FILE).is_file()):
            spec = load_space_dir(sub)
            _REGISTRY.setdefault(spec.name, spec.with_source(f"registry:{spec.name}"))


def assets_dirs() -> list[Path]:
    """Where the shipped assets live: the `mmretrieval.assets` package (a wheel installs the repo's
    assets/ there; an editable install maps it), else the checkout's assets/."""
    import importlib.util

    dirs: list[Path] = []
    try:
        found = importlib.util.find_spec("mmretrieval.assets")
    except ImportError:
        found = None
    if found is not None and found.submodule_search_locations:
        dirs += [Path(p) for p in found.submodule_search_locations]
    dirs.append(Path(__file__).resolve().parents[2] / "assets")
    return list(dict.fromkeys(d.resolve() for d in dirs if d.is_dir()))


def _model_dirs() -> list[Path]:
    dirs = [d / "models" for d in assets_dirs()]
    extra = os.environ.get("MMR_SPACES_PATH", "")
    dirs += [Path(p) for p in extra.split(os.pathsep) if p]
    return [d for d in dirs if d.is_dir()]


def register_space(spec: SpaceSpec | dict[str, Any], *, replace: bool = False) -> SpaceSpec:
    """Make a space available by name to ``--model`` and ``Engine(model=...)``."""
    _load_builtin()
    if isinstance(spec, dict):
        spec = SpaceSpec.from_dict(spec)
    if spec.name in _REGISTRY and not replace:
        raise SpaceError(f"a space named {spec.name!r} is already registered (pass replace=True to override)")
    spec = spec.with_source(f"registry:{spec.name}")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_space(name: str) -> None:
    _REGISTRY.pop(name, None)


def list_spaces() -> list[SpaceSpec]:
    _load_builtin()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def load_space_dir(path: str | Path) -> SpaceSpec:
    """Read a space folder: ``space.json``, or a bare open_clip local folder (no audio tower)."""
    d = Path(path).expanduser().resolve()
    sf = d / SPACE_FILE
    if sf.is_file():
        try:
            data = json.loads(sf.read_text())
        except ValueError as e:
            raise SpaceError(f"{sf} is not valid JSON: {e}") from None
        return SpaceSpec.from_dict(data, base_dir=d, source=str(d))
    if (d / "open_clip_config.json").is_file():
        return SpaceSpec(name=d.name, clip=ClipSpec(model=f"local-dir:{d}"), source=str(d))
    raise SpaceError(f"{d} is not a space folder: it has neither {SPACE_FILE} nor open_clip_config.json")


def resolve_model_arg(arg: str) -> SpaceSpec:
    """Turn what a user typed after ``--model`` into a space spec (no weights are loaded)."""
    if not arg or not arg.strip():
        raise SpaceError("empty --model; give a space name, a space folder, or OPENCLIP_MODEL[:TAG_OR_CHECKPOINT]")
    _load_builtin()
    if arg in _REGISTRY:
        return _REGISTRY[arg]
    p = Path(os.path.expanduser(arg))
    if p.is_dir():
        return load_space_dir(p)
    model, _, weights = arg.partition(":")
    import open_clip

    if model.replace("/", "-") not in open_clip.list_models():
        known = ", ".join(s.name for s in list_spaces())
        raise SpaceError(
            f"--model {arg!r} is not a registered space ({known}), not a space folder, and {model!r} is not an "
            f"open_clip model name (see open_clip.list_models())")
    pretrained = weights or None
    if pretrained and (os.path.sep in pretrained or Path(pretrained).suffix):
        pretrained = str(Path(os.path.expanduser(pretrained)).resolve())
    name = f"{model}:{pretrained}" if pretrained else model
    return SpaceSpec(name=name, clip=ClipSpec(model=model.replace("/", "-"), pretrained=pretrained), source=arg)


def spec_of(model: str | SpaceSpec) -> SpaceSpec:
    """A space spec as given, or resolved from what a user typed (`resolve_model_arg`)."""
    return model if isinstance(model, SpaceSpec) else resolve_model_arg(model)
