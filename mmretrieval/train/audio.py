"""`mmr train audio`: align an audio tower to an existing space (the Wav2CLIP / ImageBind recipe).

The space's text and image towers stay frozen; their embeddings of the captions (and/or paired
images) are the targets, and the audio tower learns with a symmetric InfoNCE loss (open_clip's
ClipLoss) and a learned temperature. The result is a new space folder: same text/image towers, new
audio tower, so a new fingerprint — an index built with the old space refuses it.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..encoders.waves import load_audio
from ..encoders.audio_tower import build_audio_tower
from ..errors import DecodeError, UsageError
from ..space.runtime import Space
from ..space.registry import resolve_model_arg
from ..space.spec import SPACE_FILE
from .clip import TrainReport
from .common import param_groups, run_training, seed_all
from .pairs import read_pairs

DEFAULT_TOWER = {"arch": "conv", "sample_rate": 16000, "window_s": 2.0, "hop_s": 1.0, "n_fft": 512,
                 "hop_length": 160, "n_mels": 64, "channels": [32, 64, 128, 192]}


class _Trainee(nn.Module):
    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.tower = tower
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))


def _crop(wave: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if wave.size >= n:
        s = int(rng.integers(0, wave.size - n + 1))
        return wave[s:s + n]
    return np.pad(wave, (0, n - wave.size))


def train_audio(pairs_file: str | Path, space: str, out_dir: str | Path, *, tower: dict[str, Any] | None = None,
                name: str | None = None, epochs: int = 20, batch_size: int = 64, lr: float = 2e-3,
                weight_decay: float = 0.05, warmup: int = 50, seed: int = 0, resume: bool = False,
                progress: bool = True, checkpoint_every: int = 100) -> TrainReport:
    import open_clip
    from tqdm.auto import tqdm

    if epochs < 1 or batch_size < 2:
        raise UsageError("epochs must be >= 1 and batch_size >= 2")
    t0 = time.perf_counter()
    seed_all(seed)
    out = Path(out_dir).expanduser().resolve()
    spec = resolve_model_arg(space)
    sp = Space(spec)  # frozen towers: inference only
    cfg = dict(tower or (spec.audio.config if spec.audio else DEFAULT_TOWER))
    cfg["embed_dim"] = sp.dim
    sr = int(cfg["sample_rate"])
    n_samples = int(round(float(cfg.get("window_s", 2.0)) * sr))

    rows = [p for p in read_pairs(pairs_file) if p.audio and (p.caption or p.image)]
    if not rows:
        raise UsageError(f"{pairs_file} has no (audio, caption) or (audio, image) rows")
    waves: dict[str, np.ndarray] = {}
    skipped: list[tuple[str, str]] = []
    for a in tqdm(sorted({p.audio for p in rows}), desc="loading audio", disable=not progress, leave=False):
        try:
            waves[a] = load_audio(a, sr)
        except DecodeError as e:
            skipped.append((a, str(e)))
    rows = [p for p in rows if p.audio in waves]
    if not rows:
        raise UsageError("none of the audio files in the pairs file could be read")
    # Frozen targets, computed once: text embeddings of captions and/or image embeddings.
    caps = sorted({p.caption for p in rows if p.caption})
    imgs = sorted({p.image for p in rows if p.image})
    targets: list[np.ndarray] = []
    if caps:
        targets.append(sp.text.encode(caps, batch_size=128))
    if imgs:
        targets.append(sp.image.encode(imgs, batch_size=64))
    target = torch.from_numpy(np.concatenate(targets))
    t_index = {("c", c): i for i, c in enumerate(caps)} | {("i", m): len(caps) + i for i, m in enumerate(imgs)}
    audios = sorted(waves)
    a_targets: list[list[int]] = [[] for _ in audios]
    a_ix = {a: i for i, a in enumerate(audios)}
    for p in rows:
        if p.caption:
            a_targets[a_ix[p.audio]].append(t_index[("c", p.caption)])
        if p.image:
            a_targets[a_ix[p.audio]].append(t_index[("i", p.image)])

    model = _Trainee(build_audio_tower(cfg))
    opt = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr)
    loss_fn = open_clip.ClipLoss()

    def batch_loss(idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        x = torch.from_numpy(np.stack([_crop(waves[audios[i]], n_samples, rng) for i in idx]))
        x = x * torch.from_numpy(rng.uniform(0.5, 1.5, (len(idx), 1)).astype(np.float32))  # loudness jitter
        tgt = target[[a_targets[i][rng.integers(len(a_targets[i]))] for i in idx]]
        emb = nn.functional.normalize(model.tower(x), dim=-1)
        return loss_fn(emb, tgt, model.logit_scale.exp())

    step, loss_val, resumed = run_training(
        model, opt, n_items=len(audios), batch_size=batch_size, epochs=epochs, lr=lr, warmup=warmup, seed=seed,
        out=out, name="train_audio", resume=resume, progress=progress, checkpoint_every=checkpoint_every,
        batch_loss=batch_loss)
    write_audio_space(out, sp, model.tower, cfg, name or out.name,
                      f"{spec.name} with an audio tower trained by `mmr train audio` on {Path(pairs_file).name}")
    return TrainReport(str(out), step, epochs, time.perf_counter() - t0, loss_val, skipped, resumed_from=resumed)


def write_audio_space(out: Path, sp: Space, tower: nn.Module, cfg: dict[str, Any], name: str, description: str) -> Path:
    """A new space: the frozen text/image towers (copied, or the same open_clip reference) + the new tower."""
    out.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().clone() for k, v in tower.state_dict().items()}, out / "audio_tower.pt")
    clip_dir = sp.spec.clip.local_dir
    if clip_dir is not None:
        for f in clip_dir.iterdir():
            if f.name == "open_clip_config.json" or f.suffix in (".safetensors", ".bin", ".pt", ".pth"):
                if f.name != "audio_tower.pt" and f.resolve() != (out / f.name).resolve():
                    shutil.copy2(f, out / f.name)
        clip = {"config": "open_clip_config.json"}
    else:
        clip = {"model": sp.spec.clip.model, "pretrained": sp.spec.clip.pretrained}
    space = {"name": name, "description": description, "clip": clip,
             "audio": {"config": cfg, "weights": "audio_tower.pt"}, "metric": "cosine"}
    (out / SPACE_FILE).write_text(json.dumps(space, indent=2))
    return out
