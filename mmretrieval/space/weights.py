"""Where a space's weights come from: open_clip's pretrained tags (through its hub cache) or files.

Resolution is separate from model code so that a missing file is reported before any model is
built, and so that nothing ever falls back to random weights.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MissingWeightsError, SpaceError

CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def offline() -> bool:
    """True when the user asked us not to touch the network (or the hub library was told so)."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("MMR_OFFLINE", "HF_HUB_OFFLINE"))


def cache_root() -> Path:
    return Path(os.environ.get("MMR_CACHE", os.path.expanduser("~/.cache/mmretrieval")))


@dataclass(frozen=True)
class ResolvedClip:
    """Everything open_clip needs to build the towers with real weights."""

    model_name: str                 # name passed to open_clip.create_model
    checkpoint: str | None          # file path; None for local-dir models (weights found inside)
    identity: str                   # stable identity of the weights for the fingerprint
    force_preprocess: dict[str, Any] = field(default_factory=dict)
    quick_gelu: bool = False


def file_sha256(path: str | Path) -> str:
    """Content hash of a weights file, cached by (path, size, mtime) since checkpoints are large."""
    p = Path(path).resolve()
    st = p.stat()
    key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    cache_file = cache_root() / "weights-sha256.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    cache[key] = digest
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, cache_file)
    except OSError:
        pass  # the cache is an optimisation only
    return digest


def _hf_candidates(hf_hub: str) -> tuple[str, list[str]]:
    model_id, filename = os.path.split(hf_hub)  # "org/repo/" means the default file name
    filename = filename or "open_clip_pytorch_model.bin"
    stem = filename.rsplit(".", 1)[0]
    names = [stem + ".safetensors", filename]
    if filename == "open_clip_pytorch_model.bin":
        names.insert(0, "open_clip_model.safetensors")
    return model_id, list(dict.fromkeys(names))


def _find_cached(cfg: dict[str, Any], cache_dir: str | None) -> tuple[str | None, list[str]]:
    """Look for a tag's weights in the local caches without any network access."""
    looked: list[str] = []
    if cfg.get("file"):
        looked.append(cfg["file"])
        if os.path.isfile(cfg["file"]):
            return cfg["file"], looked
    if cfg.get("hf_hub"):
        model_id, names = _hf_candidates(cfg["hf_hub"])
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - open_clip depends on it
            try_to_load_from_cache = None
        for name in names:
            looked.append(f"hf-hub {model_id}/{name}")
            if try_to_load_from_cache is not None:
                hit = try_to_load_from_cache(model_id, name, cache_dir=cache_dir)
                if isinstance(hit, str) and os.path.isfile(hit):
                    return hit, looked
    if cfg.get("url"):
        p = Path(cache_dir or os.path.expanduser("~/.cache/clip")) / os.path.basename(cfg["url"])
        looked.append(str(p))
        if p.is_file():
            return str(p), looked
    return None, looked


def resolve_clip(model: str, pretrained: str | None, cache_dir: str | None = None) -> ResolvedClip:
    """Find the open_clip weights for (model, tag-or-path), downloading only when allowed."""
    import open_clip

    if model.startswith("local-dir:"):
        d = Path(model[len("local-dir:"):])
        cfg_file = d / "open_clip_config.json"
        if not cfg_file.is_file():
            raise SpaceError(f"{d} holds no open_clip_config.json")
        ckpts = sorted(p for p in d.iterdir() if p.suffix in CHECKPOINT_SUFFIXES and p.is_file())
        if not ckpts:
            raise MissingWeightsError(
                f"the space folder {d} has an open_clip config but no weights file "
                f"(expected open_clip_model.safetensors or open_clip_pytorch_model.bin beside it)")
        # open_clip picks the checkpoint itself; we hash what is there.
        ident = "files:" + ",".join(f"{p.name}={file_sha256(p)}" for p in ckpts)
        return ResolvedClip(model_name=model, checkpoint=None, identity=ident)

    if model.replace("/", "-") not in open_clip.list_models():
        raise SpaceError(
            f"unknown open_clip model {model!r}; known models include: "
            f"{', '.join(open_clip.list_models()[:12])}, … (see `open_clip.list_models()`)")
    model = model.replace("/", "-")
    tags = open_clip.list_pretrained_tags_by_model(model)
    if pretrained is None:
        if not tags:
            raise MissingWeightsError(
                f"open_clip model {model} has no pretrained tags; give a checkpoint: --model {model}:/path/to/weights.pt")
        pretrained = tags[0]

    if os.path.sep in pretrained or Path(pretrained).suffix in CHECKPOINT_SUFFIXES:
        p = Path(os.path.expanduser(pretrained))
        if not p.is_file():
            raise MissingWeightsError(f"checkpoint file for {model} not found: {p}")
        return ResolvedClip(model_name=model, checkpoint=str(p.resolve()), identity="sha256:" + file_sha256(p))

    cfg = open_clip.get_pretrained_cfg(model, pretrained)
    if not cfg:
        raise SpaceError(
            f"{pretrained!r} is neither a pretrained tag of {model} nor an existing file; "
            f"valid tags: {', '.join(tags) or '(none)'}")
    path, looked = _find_cached(cfg, cache_dir)
    if path is None:
        reason = "offline (MMR_OFFLINE/HF_HUB_OFFLINE is set)"
        if not offline():
            try:
                path = open_clip.download_pretrained(cfg, cache_dir=cache_dir)
            except Exception as e:  # any network or hub failure means: not available
                reason = f"download failed: {str(e).splitlines()[0][:200]}"
        if not path:
            name = model
            if cfg.get("quick_gelu") and not model.endswith("-quickgelu") and f"{model}-quickgelu" in open_clip.list_models():
                name = f"{model}-quickgelu"
            raise MissingWeightsError(
                f"weights for open_clip {model}:{pretrained} are missing: not in the local cache "
                f"(looked for {'; '.join(looked)}) and {reason}. Download the file where there is network "
                f"and pass it as a local checkpoint: --model {name}:/path/to/open_clip_pytorch_model.bin, "
                f"or copy it into the Hugging Face cache (HF_HOME).")
    force = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg}
    hub = cfg.get("hf_hub") or cfg.get("url") or ""
    return ResolvedClip(
        model_name=model,
        checkpoint=str(path),
        identity=f"open_clip:{model}:{pretrained}:{hub}",
        force_preprocess=force,
        quick_gelu=bool(cfg.get("quick_gelu", False)),
    )


def resolve_audio_weights(weights: str | dict[str, Any] | None, space_name: str) -> Path:
    """A tower's weights file: a path, or a cached download (env override, cache, then the URL)."""
    if isinstance(weights, dict):
        return _resolve_cached_download(weights, space_name)
    if not weights:
        raise MissingWeightsError(f"space {space_name!r} names an audio tower but no weights file for it")
    p = Path(weights)
    if not p.is_file():
        raise MissingWeightsError(
            f"audio tower weights for space {space_name!r} are missing: {p} does not exist. "
            f"Put the file there or point the space's audio.weights at a local copy.")
    return p


def _resolve_cached_download(ref: dict[str, Any], space_name: str) -> Path:
    env = ref.get("env")
    if env and os.environ.get(env):
        p = Path(os.path.expanduser(os.environ[env]))
        if not p.is_file():
            raise MissingWeightsError(f"${env} points at {p}, which does not exist")
        return p
    target = cache_root() / ref["cache"]
    if target.is_file():
        _verify(target, ref.get("sha256"))
        return target
    url = ref.get("url")
    how = (f"put the file at {target}" + (f" (download it from {url})" if url else "")
           + (f", or set ${env} to its path" if env else ""))
    if offline() or not url:
        raise MissingWeightsError(f"audio tower weights for space {space_name!r} are missing: {how}.")
    try:
        _download(url, target, ref.get("sha256"))
    except Exception as e:  # any network or checksum failure: not available
        raise MissingWeightsError(f"audio tower weights for space {space_name!r} are missing and the download "
                                  f"failed ({str(e).splitlines()[0][:200]}): {how}.") from None
    return target


def _download(url: str, target: Path, sha256: str | None) -> None:
    import urllib.request

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + f".{os.getpid()}.part")
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=30) as r, open(tmp, "wb") as f:
            for block in iter(lambda: r.read(1 << 20), b""):
                h.update(block)
                f.write(block)
        if sha256 and h.hexdigest() != sha256:
            raise ValueError(f"checksum mismatch for {url}: got {h.hexdigest()}, expected {sha256}")
        os.replace(tmp, target)
        # No published checksum: remember the one first downloaded, so later corruption is caught.
        Path(str(target) + ".sha256").write_text(h.hexdigest() + "\n")
    finally:
        if tmp.exists():
            tmp.unlink()


def _verify(path: Path, sha256: str | None) -> None:
    """Check a cached download against the pinned checksum, or the one recorded when it was fetched."""
    side = Path(str(path) + ".sha256")
    want = sha256 or (side.read_text().strip() if side.is_file() else None)
    if want and file_sha256(path) != want:
        raise MissingWeightsError(f"{path} does not match its checksum ({want[:12]}…): the file is corrupt or "
                                  f"was replaced; delete it to download it again")
