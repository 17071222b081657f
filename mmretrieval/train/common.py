"""Pieces shared by the trainers: schedules, checkpoints that survive a kill, loss logs."""
from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cosine_lr(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return 0.5 * base * (1 + math.cos(math.pi * min(1.0, p)))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on gains, biases, embeddings and the temperature (as open_clip trains)."""
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n or "embedding" in n:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


class LossLog:
    def __init__(self, path: Path, append: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "a" if append else "w")

    def write(self, **row: Any) -> None:
        self.f.write(json.dumps(row) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def run_training(model: torch.nn.Module, opt: torch.optim.Optimizer, *, n_items: int, batch_size: int, epochs: int,
                 lr: float, warmup: int, seed: int, out: Path, name: str, resume: bool, progress: bool,
                 checkpoint_every: int, batch_loss) -> tuple[int, float, int]:
    """The loop both trainers share: shuffled epochs, cosine LR with warm-up, a clamped temperature,
    a loss log, and a checkpoint (model, optimizer, step, epoch, RNG) that `resume` continues from.

    `batch_loss(indices, rng)` returns the loss tensor of one batch. Returns (steps, last loss, resumed step).
    """
    from tqdm.auto import tqdm

    steps_per_epoch = max(1, n_items // batch_size)
    total = epochs * steps_per_epoch
    ckpt_path = out / "checkpoints" / f"{name}_last.pt"
    step, start_epoch = 0, 0
    state = load_checkpoint(ckpt_path) if resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, start_epoch = state["step"], state["epoch"]
        torch.set_rng_state(state["torch_rng"])
    resumed = 0 if state is None else step

    def save(epoch: int) -> None:
        save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                    "epoch": epoch, "torch_rng": torch.get_rng_state()})

    log = LossLog(out / f"{name}_log.jsonl", append=state is not None)
    rng = np.random.default_rng(seed + start_epoch)
    model.train()
    bar = tqdm(total=total, initial=min(step, total), desc=name, disable=not progress, dynamic_ncols=True)
    loss_val = float("nan")
    try:
        for epoch in range(start_epoch, epochs):
            order = rng.permutation(n_items)
            first = step - epoch * steps_per_epoch  # resume inside an epoch
            for b in range(max(0, first), steps_per_epoch):
                for g in opt.param_groups:
                    g["lr"] = cosine_lr(step, total, lr, warmup)
                loss = batch_loss(order[b * batch_size:(b + 1) * batch_size], rng)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    model.logit_scale.clamp_(0, math.log(100))
                step += 1
                loss_val = float(loss.detach())
                log.write(step=step, epoch=epoch, loss=round(loss_val, 5), lr=opt.param_groups[0]["lr"],
                          logit_scale=round(float(model.logit_scale.detach().exp()), 3))
                bar.set_postfix(loss=f"{loss_val:.3f}", epoch=epoch)
                bar.update(1)
                if step % checkpoint_every == 0:
                    save(epoch)
            save(epoch + 1)
    finally:
        bar.close()
        log.close()
    model.eval()
    return step, loss_val, resumed
