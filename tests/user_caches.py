"""Put seeded placeholder weights exactly where real downloads land on a user's machine.

- open_clip pretrained tags with a hub id: the Hugging Face hub cache layout that `hf_hub_download` writes
  (``models--ORG--REPO/blobs/SHA``, ``snapshots/REV/FILE`` -> ``../../blobs/SHA``, ``refs/main`` = REV);
- tags with only a URL: open_clip's URL cache (``~/.cache/clip/FILE``);
- audio towers with a cached download: the project's cache (``~/.cache/mmretrieval/...``), in the released
  checkpoint's layout (for Wav2CLIP: ``audio_encoder.*`` + ``audio_transform.*`` and a training-only key);
- local spaces (folders) already carry their weights.

The placeholders are random but seeded, and ViT-B-32-sized where the space is: loading them costs what
real weights cost. One file per architecture is written and hard-linked wherever it is needed.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch


@dataclass
class UserHome:
    """A fresh $HOME whose standard caches the tests fill; `env()` is what a user's shell would have."""

    root: Path
    store: Path                                      # placeholder files, written once per architecture
    placed: dict[str, list[Path]] = field(default_factory=dict)

    @property
    def hf_home(self) -> Path:
        return self.root / ".cache" / "huggingface"

    @property
    def hub_cache(self) -> Path:
        return self.hf_home / "hub"

    @property
    def mmr_cache(self) -> Path:
        return self.root / ".cache" / "mmretrieval"

    @property
    def clip_url_cache(self) -> Path:
        return self.root / ".cache" / "clip"

    def env(self) -> dict[str, str]:
        """The environment of a user who has never set anything: only HOME (and HF_HOME) point here.
        No offline switch is set: with the weights in the caches, nothing may need the network. Any
        attempt to reach the hub goes to a closed loopback port and fails at once."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("MMR_CACHE", "MMR_OFFLINE", "HF_HUB_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE",
                            "TORCH_HOME", "XDG_CACHE_HOME", "MMR_INDEX", "XDG_DATA_HOME", "MMR_SPACES_PATH",
                            "MMR_WAV2CLIP_WEIGHTS", "MMR_PRECISION", "MMR_BACKEND")}
        env.update(HOME=str(self.root), HF_HOME=str(self.hf_home), HF_ENDPOINT="http://127.0.0.1:9",
                   PYTHONUNBUFFERED="1")
        return env


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def put_in_hf_cache(hub_cache: Path, repo_id: str, filename: str, src: Path, revision: str | None = None) -> Path:
    """Lay `src` out as `hf_hub_download(repo_id, filename)` leaves it; returns the snapshot path."""
    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    blob = repo / "blobs" / _sha256(src)
    blob.parent.mkdir(parents=True, exist_ok=True)
    if not blob.exists():
        os.link(src, blob)
    rev = revision or hashlib.sha1(repo_id.encode()).hexdigest()  # a commit hash, as the hub gives
    snap = repo / "snapshots" / rev / filename
    snap.parent.mkdir(parents=True, exist_ok=True)
    if not snap.exists():
        snap.symlink_to(os.path.relpath(blob, snap.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(rev)
    return snap


def placeholder_clip(store: Path, model: str, seed: int = 0) -> Path:
    """Random (seeded) weights for an open_clip architecture, as safetensors, written once.

    Not open_clip's own initialisation: with it, a ViT-B-32 maps any two images to vectors at cosine
    ~0.995, so a parity threshold of 0.999 would tell nothing apart. Matrices drawn with std 1/sqrt(fan_in)
    keep each layer's signal at unit scale, and different inputs land far apart (cosine ~0.8)."""
    import open_clip
    from safetensors.torch import save_file

    path = store / f"{model}-seed{seed}.safetensors"
    if not path.exists():
        store.mkdir(parents=True, exist_ok=True)
        g = torch.Generator().manual_seed(seed)
        state = {}
        for k, v in open_clip.create_model(model).state_dict().items():
            if v.is_floating_point() and v.ndim >= 2:
                fan_in = v.shape[0] if k in ("visual.proj", "text_projection") else v[0].numel()
                scale = 0.02 if ("positional" in k or "class_embedding" in k) else \
                    0.1 if "embedding" in k else fan_in ** -0.5
                v = torch.randn(v.shape, generator=g) * scale
            state[k] = v.contiguous()
        tmp = path.with_suffix(".tmp")
        save_file(state, str(tmp))
        tmp.rename(path)
    return path


def placeholder_audio(store: Path, config: dict, seed: int = 0) -> Path:
    """Random (seeded) audio tower weights in the released checkpoint's layout, with non-trivial
    batch-norm statistics as a trained tower has, plus a training-only key the loader must ignore."""
    from mmretrieval.encoders.audio_tower import build_audio_tower

    path = store / f"audio-{config['arch']}-seed{seed}.pt"
    if not path.exists():
        store.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(seed)
        tower = build_audio_tower(config)
        for m in tower.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        state = dict(tower.state_dict())
        state["logit_scale_ai"] = torch.tensor(1.0)
        torch.save(state, path)
    return path


def place_space_weights(spec, home: UserHome) -> list[Path]:
    """Put every weights file `spec` needs where a real download would put it; returns those paths."""
    import open_clip

    from mmretrieval.space.weights import _hf_candidates

    placed: list[Path] = []
    clip = spec.clip
    if clip.local_dir is None and clip.pretrained and os.sep not in clip.pretrained:
        cfg = open_clip.get_pretrained_cfg(clip.model, clip.pretrained)
        src = placeholder_clip(home.store, clip.model)
        if cfg.get("hf_hub"):
            repo_id, names = _hf_candidates(cfg["hf_hub"])
            placed.append(put_in_hf_cache(home.hub_cache, repo_id, names[0], src))
        else:
            target = home.clip_url_cache / os.path.basename(cfg["url"])
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                os.link(src, target)
            placed.append(target)
    audio = spec.audio
    if audio is not None and isinstance(audio.weights, dict):
        src = placeholder_audio(home.store, {**audio.config, "embed_dim": audio.config.get("embed_dim", 512)})
        target = home.mmr_cache / audio.weights["cache"]
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(src, target)
        placed.append(target)
    home.placed[spec.name] = placed
    return placed
