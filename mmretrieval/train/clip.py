"""`mmr train clip`: contrastive training or fine-tuning of an open_clip model with open_clip's CLIP loss.

Starts from a pretrained space/tag/checkpoint (``init``) or from an open_clip config (``config``, random
init on purpose: training from scratch). Writes a space folder that ``--model`` accepts.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..encoders.pixels import load_image
from ..errors import DecodeError, UsageError
from ..space.spec import SPACE_FILE
from .common import param_groups, run_training, seed_all
from .pairs import read_pairs


@dataclass
class TrainReport:
    out_dir: str
    steps: int
    epochs: int
    seconds: float
    final_loss: float
    skipped: list[tuple[str, str]] = field(default_factory=list)
    resumed_from: int = 0

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__ | {"skipped": [list(s) for s in self.skipped]}


def _build_model(out: Path, init: str | None, config: str | None):
    """Returns (model, preprocess, tokenizer, open_clip_config dict)."""
    import open_clip

    if (init is None) == (config is None):
        raise UsageError("give exactly one of --init (a space, tag or checkpoint to start from) or "
                         "--config (an open_clip_config.json to train from scratch)")
    out.mkdir(parents=True, exist_ok=True)
    if config is not None:
        cfg = json.loads(Path(config).read_text())
        if "model_cfg" not in cfg:
            raise UsageError(f"{config} must hold {{'model_cfg': ..., 'preprocess_cfg': ...}} (open_clip_config.json)")
        stage = out / "checkpoints" / "config"
        stage.mkdir(parents=True, exist_ok=True)
        (stage / "open_clip_config.json").write_text(json.dumps(cfg, indent=2))
        # From scratch: random initialisation is the point here, and the user asked for it.
        model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{stage}", load_weights=False)
        tokenizer = open_clip.get_tokenizer(f"local-dir:{stage}")
        return model, preprocess, tokenizer, cfg
    from ..space.runtime import Space
    from ..space.towers import clip_configs
    from ..space.registry import resolve_model_arg

    space = Space(resolve_model_arg(init), inference=False)
    model_cfg, pre = clip_configs(space.resolved)
    pre = {k: v for k, v in pre.items() if k != "size"}
    return space.model, space.preprocess, space.tokenizer, {"model_cfg": model_cfg, "preprocess_cfg": pre}


def _load_images(paths: list[str], preprocess: Callable, progress: bool) -> tuple[torch.Tensor, list[int], list[tuple[str, str]]]:
    from tqdm.auto import tqdm

    tensors, ok, skipped = [], [], []
    for i, p in enumerate(tqdm(paths, desc="loading images", disable=not progress, leave=False)):
        try:
            tensors.append(preprocess(load_image(p)))
            ok.append(i)
        except DecodeError as e:
            skipped.append((p, str(e)))
    if not tensors:
        raise UsageError("none of the images in the pairs file could be read")
    return torch.stack(tensors), ok, skipped


def train_clip(pairs_file: str | Path, out_dir: str | Path, *, init: str | None = None, config: str | None = None,
               name: str | None = None, text_pairs: str | Path | None = None, epochs: int = 10, batch_size: int = 128,
               lr: float = 5e-4, weight_decay: float = 0.1, warmup: int = 50, seed: int = 0, resume: bool = False,
               half: bool = False, progress: bool = True, checkpoint_every: int = 100) -> TrainReport:
    """Train on (image, caption) pairs; optionally also on caption–caption paraphrase pairs (text_pairs)."""
    import open_clip

    if epochs < 1 or batch_size < 2:
        raise UsageError("epochs must be >= 1 and batch_size >= 2")
    t0 = time.perf_counter()
    seed_all(seed)
    out = Path(out_dir).expanduser().resolve()
    pairs = [p for p in read_pairs(pairs_file) if p.image and p.caption]
    if not pairs:
        raise UsageError(f"{pairs_file} has no (image, caption) rows")
    model, preprocess, tokenizer, oc_cfg = _build_model(out, init, config)

    # Every image once, preprocessed up front: the corpus is small and epochs re-use it.
    uniq = sorted({p.image for p in pairs})
    images, ok, skipped = _load_images(uniq, preprocess, progress)
    row_of = {uniq[i]: r for r, i in enumerate(ok)}
    caps_of: dict[int, list[int]] = {}
    captions: list[str] = []
    for p in pairs:
        if p.image in row_of:
            caps_of.setdefault(row_of[p.image], []).append(len(captions))
            captions.append(p.caption)
    tokens = tokenizer(captions)
    tt = None
    if text_pairs is not None:
        rows = [json.loads(line) for line in Path(text_pairs).read_text().splitlines() if line.strip()]
        tt = (tokenizer([r["caption"] for r in rows]), tokenizer([r["caption2"] for r in rows]))

    opt = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.98), eps=1e-6)
    loss_fn = open_clip.ClipLoss()

    def batch_loss(idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        cap_idx = [caps_of[i][rng.integers(len(caps_of[i]))] for i in idx]  # one caption per image and epoch
        scale = model.logit_scale.exp()
        loss = loss_fn(model.encode_image(images[idx], normalize=True),
                       model.encode_text(tokens[cap_idx], normalize=True), scale)
        if tt is not None:
            j = rng.integers(tt[0].shape[0], size=len(idx))
            loss = loss + loss_fn(model.encode_text(tt[0][j], normalize=True),
                                  model.encode_text(tt[1][j], normalize=True), scale)
        return loss

    step, loss_val, resumed = run_training(
        model, opt, n_items=images.shape[0], batch_size=batch_size, epochs=epochs, lr=lr, warmup=warmup,
        seed=seed, out=out, name="train", resume=resume, progress=progress, checkpoint_every=checkpoint_every,
        batch_loss=batch_loss)
    write_clip_space(out, model, oc_cfg, name or out.name, half=half,
                     description=f"open_clip trained by `mmr train clip` on {Path(pairs_file).name}")
    return TrainReport(str(out), step, epochs, time.perf_counter() - t0, loss_val, skipped, resumed_from=resumed)


def write_clip_space(out: Path, model: torch.nn.Module, oc_cfg: dict[str, Any], name: str, *, half: bool = False,
                     description: str = "", audio: dict[str, Any] | None = None) -> Path:
    """Write open_clip_config.json + weights + space.json: a folder `--model` accepts."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    sd = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(out / "open_clip_model.safetensors"))
    (out / "open_clip_config.json").write_text(json.dumps(oc_cfg, indent=2))
    space = {"name": name, "description": description, "clip": {"config": "open_clip_config.json"},
             "audio": audio, "metric": "cosine"}
    (out / SPACE_FILE).write_text(json.dumps(space, indent=2))
    return out


def copy_clip_files(src_dir: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in ("open_clip_config.json", "open_clip_model.safetensors"):
        shutil.copy2(src_dir / f, dst / f)
