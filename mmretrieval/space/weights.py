"""Where a space's weights come from: open_clip's pretrained tags (through its hub cache) or files.

Resolution is separate from model code so that a missing file is reported before any model is
built, and so that nothing ever falls back to random weights.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import MissingWeightsError, SpaceError
from .cache import cache_root


CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# What open_clip loads from a `local-dir:` folder, in its order of preference.
OPEN_CLIP_LOCAL_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin",
                         "open_clip_pytorch_model.pth", "model.safetensors", "pytorch_model.bin", "pytorch_model.pth",
                         "model.pth")


def offline() -> bool:
    """True when the user asked us not to touch the network (or the hub library was told so)."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("MMR_OFFLINE", "HF_HUB_OFFLINE"))


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
    # entries of files since changed or gone (a replaced checkpoint, a benchmark's temporary one) go with it
    cache = {k: v for k, v in cache.items() if _still_there(k)}
    cache[key] = digest
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, cache_file)
    except OSError:
        pass  # the cache is an optimisation only
    return digest


def _still_there(key: str) -> bool:
    """Is the file of a `file_sha256` cache key still there, at that size and modification time?"""
    try:
        path, size, mtime = key.rsplit("|", 2)
        st = os.stat(path)
        return st.st_size == int(size) and st.st_mtime_ns == int(mtime)
    except (OSError, ValueError):
        return False


def _unreachable(cfg: dict[str, Any], timeout: float = 3.0) -> str | None:
    """Why the host a tag downloads from does not answer (None: it does, or a proxy stands between). Without
    a network, huggingface_hub retried each candidate file with backoff (~23 s each: a first `mmr index` waited
    46 s to say the weights are missing); a connection attempt says so at once."""
    import socket
    import urllib.request
    from urllib.parse import urlparse

    if cfg.get("hf_hub"):
        from huggingface_hub import constants

        url = constants.ENDPOINT
    else:
        url = cfg.get("url") or ""
    u = urlparse(url)
    proxies = urllib.request.getproxies()
    if not u.hostname or proxies.get(u.scheme) or proxies.get("all"):
        return None  # through a proxy only the download itself can tell
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        socket.create_connection((u.hostname, port), timeout=timeout).close()
    except OSError as e:
        return f"{u.hostname}:{port} does not answer: {e.strerror or type(e).__name__}"
    return None


def _hf_candidates(hf_hub: str) -> tuple[str, list[str]]:
    model_id, filename = os.path.split(hf_hub)  # "org/repo/" means the default file name
    filename = filename or "open_clip_pytorch_model.bin"
    stem = filename.rsplit(".", 1)[0]
    names = [stem + ".safetensors", filename]
    if filename == "open_clip_pytorch_model.bin":
        names.insert(0, "open_clip_model.safetensors")
    return model_id, list(dict.fromkeys(names))


def project_clip_dir(model: str, tag: str) -> Path:
    """Where a user can put a tag's weights by hand (any checkpoint file in this folder is used)."""
    return cache_root() / "open_clip" / model / tag


def _url_cache_dir(cache_dir: str | None) -> Path:
    return Path(cache_dir or os.path.expanduser("~/.cache/clip"))  # open_clip's (and OpenAI clip's) own


def _url_sha256(url: str) -> str:
    """The checksum a release URL carries (as open_clip checks it), or ''."""
    if "openaipublic" in url:
        return url.split("/")[-2]
    if "mlfoundations" in url:
        return os.path.splitext(os.path.basename(url))[0].split("-")[-1]
    return ""


def _find_cached(cfg: dict[str, Any], cache_dir: str | None, model: str = "", tag: str = "") -> tuple[str | None, list[str]]:
    """Look for a tag's weights in the local caches without any network access: the file named by the
    tag, the Hugging Face hub cache, open_clip's URL cache, then the project's cache."""
    looked: list[str] = []
    if cfg.get("file"):
        looked.append(cfg["file"])
        if os.path.isfile(cfg["file"]):
            return cfg["file"], looked
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        model_id, names = _hf_candidates(cfg["hf_hub"])
        for name in names:
            looked.append(f"hf-hub {model_id}/{name}")
            hit = try_to_load_from_cache(model_id, name, cache_dir=cache_dir)
            if isinstance(hit, str) and os.path.isfile(hit):
                return hit, looked
    if cfg.get("url"):
        p = _url_cache_dir(cache_dir) / os.path.basename(cfg["url"])
        looked.append(str(p))
        if p.is_file():
            want = _url_sha256(cfg["url"])
            if want and not file_sha256(p).startswith(want):
                raise MissingWeightsError(f"{p} does not match the checksum in its download URL ({want[:12]}…): "
                                          f"the file is corrupt or another model's; delete it")
            return str(p), looked
    if model and tag:
        d = project_clip_dir(model, tag)
        looked.append(f"{d}/*.safetensors|*.bin|*.pt|*.pth")
        if d.is_dir():
            files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
            if files:
                return str(files[0]), looked
    return None, looked


def _known_model(model: str) -> str:
    from .open_clip_catalog import catalog

    models = catalog().models
    if model.replace("/", "-") not in models:
        raise SpaceError(
            f"unknown open_clip model {model!r}; known models include: "
            f"{', '.join(models[:12])}, … (see `open_clip.list_models()`)")
    return model.replace("/", "-")


def _tag_cfg(model: str, pretrained: str | None) -> tuple[str, str, dict[str, Any]]:
    """(model, tag, open_clip's pretrained config) for a tag, or a typed error naming the valid ones."""
    from .open_clip_catalog import catalog

    model = _known_model(model)
    tags = catalog().tags(model)
    if pretrained is None:
        if not tags:
            raise MissingWeightsError(
                f"open_clip model {model} has no pretrained tags; give a checkpoint: --model {model}:/path/to/weights.pt")
        pretrained = tags[0]
    cfg = catalog().cfg(model, pretrained)
    if not cfg:
        raise SpaceError(
            f"{pretrained!r} is neither a pretrained tag of {model} nor an existing file; "
            f"valid tags: {', '.join(tags) or '(none)'}")
    return model, pretrained, dict(cfg)


def _is_path(pretrained: str) -> bool:
    return os.path.sep in pretrained or Path(pretrained).suffix in CHECKPOINT_SUFFIXES


def _where_to_get(model: str, tag: str, cfg: dict[str, Any]) -> tuple[Path, str, str]:
    """(where to put the file by hand, another file name that works there or "", where it comes from)."""
    if cfg.get("hf_hub"):
        model_id, names = _hf_candidates(cfg["hf_hub"])
        source = f"https://huggingface.co/{model_id}/resolve/main/{names[0]}"
        return project_clip_dir(model, tag) / names[0], (names[-1] if len(names) > 1 else ""), source
    source = cfg.get("url", "")
    return project_clip_dir(model, tag) / os.path.basename(source or "weights.pt"), "", source


def _put_text(put: Path, alt: str) -> str:
    return f"{put}" + (f" (or {alt})" if alt else "")


def _quickgelu_name(model: str, cfg: dict[str, Any]) -> str:
    from .open_clip_catalog import catalog

    if cfg.get("quick_gelu") and not model.endswith("-quickgelu") and f"{model}-quickgelu" in catalog().models:
        return f"{model}-quickgelu"
    return model


def resolve_clip(model: str, pretrained: str | None, cache_dir: str | None = None,
                 download: bool = True) -> ResolvedClip:
    """Find the open_clip weights for (model, tag-or-path), downloading only when allowed (`download`
    and not offline)."""
    if model.startswith("local-dir:"):
        d = Path(model[len("local-dir:"):])
        cfg_file = d / "open_clip_config.json"
        if not cfg_file.is_file():
            raise SpaceError(f"{d} holds no open_clip_config.json")
        ckpts = local_checkpoints(d)
        if not ckpts:
            raise MissingWeightsError(
                f"the space folder {d} has an open_clip config but no weights file "
                f"(expected open_clip_model.safetensors or open_clip_pytorch_model.bin beside it)")
        # open_clip picks the checkpoint itself; we hash what is there.
        ident = "files:" + ",".join(f"{p.name}={file_sha256(p)}" for p in ckpts)
        return ResolvedClip(model_name=model, checkpoint=None, identity=ident)

    if pretrained is not None and _is_path(pretrained):
        model = _known_model(model)
        p = Path(os.path.expanduser(pretrained))
        if not p.is_file():
            raise MissingWeightsError(f"checkpoint file for {model} not found: {p}")
        return ResolvedClip(model_name=model, checkpoint=str(p.resolve()), identity="sha256:" + file_sha256(p))

    model, pretrained, cfg = _tag_cfg(model, pretrained)
    path, looked = _find_cached(cfg, cache_dir, model, pretrained)
    if path is None:
        reason = "offline (MMR_OFFLINE/HF_HUB_OFFLINE is set)" if download else "not downloaded"
        unreachable = _unreachable(cfg) if download and not offline() else None
        if unreachable:
            reason = f"there is no network to download them ({unreachable})"
        elif download and not offline():
            try:
                import open_clip

                path = open_clip.download_pretrained(cfg, cache_dir=cache_dir)
            except Exception as e:  # any network or hub failure means: not available
                reason = f"download failed: {str(e).splitlines()[0][:200]}"
        if not path:
            put, alt, source = _where_to_get(model, pretrained, cfg)
            raise MissingWeightsError(
                f"weights for open_clip {model}:{pretrained} are missing: not in the local caches "
                f"(looked for {'; '.join(looked)}) and {reason}. Run `mmr fetch` where there is network, "
                f"or download {source} and put it at {_put_text(put, alt)}, "
                f"or pass it as a checkpoint: --model {_quickgelu_name(model, cfg)}:/path/to/{put.name}")
    _refuse_torchscript(Path(path))
    force = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg}
    hub = cfg.get("hf_hub") or cfg.get("url") or ""
    return ResolvedClip(
        model_name=model,
        checkpoint=str(path),
        identity=f"open_clip:{model}:{pretrained}:{hub}",
        force_preprocess=force,
        quick_gelu=bool(cfg.get("quick_gelu", False)),
    )


def local_checkpoints(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.suffix in CHECKPOINT_SUFFIXES and p.is_file())


def _refuse_torchscript(path: Path) -> None:
    """OpenAI's original release is a TorchScript archive, which loading as plain weights cannot read
    safely; say which file works instead of failing inside torch."""
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                if any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist()[:200]):
                    raise MissingWeightsError(
                        f"{path} is a TorchScript archive (OpenAI's original release), which mmretrieval does not "
                        f"load; use the open_clip weights from the Hugging Face hub instead (`mmr fetch`)")
    except (OSError, zipfile.BadZipFile):
        pass


@dataclass(frozen=True)
class WeightsFile:
    """One file a space needs: where it was found (if it was), and where it would come from."""

    role: str                  # "text+image" or "audio"
    found: str | None
    size: int | None
    put_at: str                # where a user can put it by hand
    source: str                # where `mmr fetch` downloads it from ("" when it cannot be fetched)
    problem: str = ""          # why it is unusable, when found is None

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "found": self.found, "size": self.size, "put_at": self.put_at,
                "source": self.source, "problem": self.problem}


def _status_of(role: str, resolve: Callable[[], Any], put_at: str, source: str) -> WeightsFile:
    try:
        path = resolve()
        return WeightsFile(role, str(path), Path(path).stat().st_size, put_at, source)
    except MissingWeightsError as e:
        return WeightsFile(role, None, None, put_at, source, problem=str(e))


def clip_weights_status(model: str, pretrained: str | None) -> WeightsFile:
    if model.startswith("local-dir:"):
        d = Path(model[len("local-dir:"):])
        files = [d / n for n in OPEN_CLIP_LOCAL_FILES if (d / n).is_file()] if d.is_dir() else []
        if files:
            return WeightsFile("text+image", str(files[0]), files[0].stat().st_size, str(d), "")
        return WeightsFile("text+image", None, None, str(d / "open_clip_model.safetensors"), "",
                           problem=f"no weights file in {d}")
    if pretrained is not None and _is_path(pretrained):
        return _status_of("text+image", lambda: resolve_clip(model, pretrained, download=False).checkpoint, pretrained, "")
    model, tag, cfg = _tag_cfg(model, pretrained)
    put, alt, source = _where_to_get(model, tag, cfg)
    return _status_of("text+image", lambda: resolve_clip(model, tag, download=False).checkpoint,
                      _put_text(put, alt), source)


def audio_weights_status(weights: str | dict[str, Any] | None, space_name: str) -> WeightsFile:
    if isinstance(weights, dict):
        put, source = str(cache_root() / weights["cache"]), weights.get("url") or ""
    else:
        put, source = str(weights or ""), ""
    return _status_of("audio", lambda: resolve_audio_weights(weights, space_name, download=False), put, source)


def resolve_audio_weights(weights: str | dict[str, Any] | None, space_name: str, download: bool = True) -> Path:
    """A tower's weights file: a path, or a cached download (env override, the project's cache, torch.hub's
    cache, then the URL when `download` and not offline)."""
    if isinstance(weights, dict):
        return resolve_cached_download(weights, space_name, download=download)
    if not weights:
        raise MissingWeightsError(f"space {space_name!r} names an audio tower but no weights file for it")
    p = Path(weights)
    if not p.is_file():
        raise MissingWeightsError(
            f"audio tower weights for space {space_name!r} are missing: {p} does not exist. "
            f"Put the file there or point the space's audio.weights at a local copy.")
    return p


def resolve_cached_download(ref: dict[str, Any], space_name: str, progress: bool = False,
                             download: bool = True) -> Path:
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
    hub = _torch_hub_copy(url)
    if hub is not None:  # downloaded earlier by the tower's own package (torch.hub's cache)
        _verify(hub, ref.get("sha256"))
        return hub
    how = (f"put the file at {target}" + (f" (download it from {url})" if url else "")
           + (f", or set ${env} to its path" if env else ""))
    if offline() or not url or not download:
        raise MissingWeightsError(f"audio tower weights for space {space_name!r} are missing: {how}.")
    try:
        _download(url, target, ref.get("sha256"), progress)
    except Exception as e:  # any network or checksum failure: not available
        raise MissingWeightsError(f"audio tower weights for space {space_name!r} are missing and the download "
                                  f"failed ({str(e).splitlines()[0][:200]}): {how}.") from None
    return target


def _torch_hub_copy(url: str | None) -> Path | None:
    """The file torch.hub.load_state_dict_from_url(url) would have saved, if it is there."""
    if not url:
        return None
    p = _torch_hub_dir() / "checkpoints" / os.path.basename(url)
    return p if p.is_file() else None


def _torch_hub_dir() -> Path:
    """torch.hub.get_dir() without importing torch where it is not loaded (its rule: $TORCH_HOME/hub, else
    $XDG_CACHE_HOME/torch/hub, else ~/.cache/torch/hub); where it is, its own answer (`set_dir` included)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return Path(torch.hub.get_dir())
    home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(os.path.expanduser(home)) / "hub"


def _download(url: str, target: Path, sha256: str | None, progress: bool = False) -> None:
    import urllib.request

    from tqdm.auto import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + f".{os.getpid()}.part")
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=30) as r, open(tmp, "wb") as f, \
                tqdm(total=int(r.headers.get("Content-Length") or 0) or None, unit="B", unit_scale=True,
                     desc=os.path.basename(url), disable=not progress, leave=False) as bar:
            for block in iter(lambda: r.read(1 << 20), b""):
                h.update(block)
                f.write(block)
                bar.update(len(block))
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
