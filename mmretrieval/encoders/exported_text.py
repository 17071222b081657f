"""The text tower from its ONNX export: CLIP tokens (`bpe`) through ONNX Runtime (`ort_tower`), no torch.

`TextEncoder` runs its exported tower through `encode_ids` too, so a one-off query (`ExportedTextEncoder`,
built by `space.passport`) and a loaded space give a text the same vector.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import UsageError
from .arrays import PER_CORE_MIN_TOKENS, check_args, unit_rows


def token_ids(tokenizer: Any, texts: list[Any]) -> np.ndarray:
    """int64 ids ``[N, context]``, from a numpy tokenizer (`encoders.bpe`) or open_clip's (a torch tensor)."""
    for t in texts:
        if not isinstance(t, str):
            raise UsageError(f"text inputs must be strings, got {type(t).__name__}")
    tokens = tokenizer(texts)
    return tokens if isinstance(tokens, np.ndarray) else tokens.numpy()


def text_lengths(ids: np.ndarray) -> np.ndarray:
    """Positions up to each text's last non-padding token."""
    return ids.shape[1] - np.argmax((ids != 0)[:, ::-1], axis=1)


def encode_ids(ids: np.ndarray, runner: Any, dim: int, batch_size: int) -> np.ndarray:
    """Unit vectors of token ids through an exported text tower, each text run only up to its length (the
    tower is causal and pools at the end token: padding cannot change it) and sorted by length, so that
    similar lengths share a call."""
    lengths = text_lengths(ids)
    order = np.argsort(lengths, kind="stable")
    out = np.empty((len(ids), dim), dtype=np.float32)
    for start in range(0, len(ids), batch_size):
        idx = order[start:start + batch_size]
        if getattr(runner, "per_core", 0):  # long texts one per core, each at its length
            long = idx[lengths[idx] >= PER_CORE_MIN_TOKENS]
            if len(long) > 1:
                out[long] = unit_rows(runner.across_cores([ids[i, :lengths[i]] for i in long]))
                idx = idx[lengths[idx] < PER_CORE_MIN_TOKENS]
        for r in _runs(idx, lengths, runner) if len(idx) else []:
            out[r] = unit_rows(runner(ids[r, :int(lengths[r].max())]))
    return out


def _runs(idx: np.ndarray, lengths: np.ndarray, runner: Any) -> list[np.ndarray]:
    """The calls a batch `idx` (sorted by length) makes to an exported tower: one, or where int8 scales each
    text by its own activations (padding included: `OrtTower.equal_shapes`), one per length; a tower whose
    scales span the call (`per_item`), one per text. Each text then runs at its own length, as alone."""
    if getattr(runner, "per_item", False):
        return [idx[i:i + 1] for i in range(len(idx))]
    if getattr(runner, "equal_shapes", False):
        return np.split(idx, np.flatnonzero(np.diff(lengths[idx])) + 1)
    return [idx]


class ExportedTextEncoder:
    """A space's text tower as exported (`OrtTower`) with its tokenizer: the `encode()` contract of the
    other encoders, for processes that never load torch."""

    modality = "text"

    def __init__(self, runner: Any, tokenizer: Any, dim: int) -> None:
        self.runner, self.tokenizer, self.dim = runner, tokenizer, dim
        self.context_length = int(getattr(tokenizer, "context_length", 77) or 77)

    def encode(self, inputs: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        check_args(type(self).__name__, inputs, batch_size)
        if not inputs:
            return np.empty((0, self.dim), dtype=np.float32)
        return encode_ids(token_ids(self.tokenizer, list(inputs)), self.runner, self.dim, batch_size)

    def warm_up(self) -> None:
        self.runner.open()
