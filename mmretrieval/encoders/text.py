"""Text: the text tower (tokens from open_clip's tokenizer or `bpe.py`); passages are cut by `passages.py`."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import UsageError
from .base import Encoder, normalize
from .exported_text import encode_ids, text_lengths, token_ids
from . import torch_gate


class TextEncoder(Encoder):
    """open_clip tokenizer + text tower.

    open_clip pads every text to the full context (77 tokens) and runs the tower over all of it. For a
    causal text tower that pools at the end-of-text token, the padding cannot change the result, so we
    sort texts by length, and run each batch only up to its longest text (`trim`): the same vectors
    (to float rounding), several times faster on short texts.
    """

    modality = "text"

    def __init__(self, model: torch.nn.Module | Callable[[], torch.nn.Module], tokenizer: Any, dim: int,
                 device: torch.device, trim: bool = True,
                 runner: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        """`runner`: the tower under another runtime (`encoders.onnx_runtime`), trimmed int64 tokens in.
        `model`: the module, or a loader of it where a runner is given (see `Encoder.model`): text towers are
        exported only from trimmable models."""
        super().__init__(dim, device)
        self.model = model
        self.tokenizer = tokenizer
        self.context_length = int(getattr(tokenizer, "context_length", 77) or 77)
        self.trim = trim and (runner is not None and not self.model_built or can_trim(self.model))
        if runner is not None and not self.trim:
            raise UsageError("an exported text tower needs a trimmable (open_clip CLIP) model")
        self.runner = runner

    def encode(self, inputs: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        self.check_args(inputs, batch_size)
        if not self.trim or not inputs:
            return super().encode(inputs, batch_size)
        ids = token_ids(self.tokenizer, list(inputs))  # the runner's path stays in numpy: a torch op cost ~1 ms
        if self.runner is not None:
            return encode_ids(ids, self.runner, self.dim, batch_size)
        order = np.argsort(text_lengths(ids), kind="stable")  # similar lengths together
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for start in range(0, len(ids), batch_size):
            idx = order[start:start + batch_size]
            with torch_gate.forward():
                part = torch.from_numpy(ids[idx])
                n = trimmed_length(part)  # here, before the copy: on a GPU it would wait for the device
                out[idx] = normalize(encode_text_trimmed(self.model, part[:, :n].to(self.device), n))
        return out

    def _encode_batch(self, batch: list[Any]) -> torch.Tensor:
        tokens = torch.as_tensor(token_ids(self.tokenizer, batch)).to(self.device)
        return self.model.encode_text(tokens)

    def count_tokens(self, text: str) -> int:
        """BPE tokens of `text` without the start/end markers."""
        tok = self.tokenizer
        if hasattr(tok, "encode"):
            return len(tok.encode(text))
        inner = getattr(tok, "tokenizer", None)
        if inner is not None and hasattr(inner, "encode"):
            return len(inner.encode(text, add_special_tokens=False))
        return len(text.split())

    @property
    def max_passage_tokens(self) -> int:
        return self.context_length - 2  # start and end markers


def can_trim(model: torch.nn.Module) -> bool:
    """Trimming is exact for open_clip's CLIP text tower: causal mask, pooling at (or before) the EOT token."""
    import open_clip

    return (type(model) is open_clip.CLIP and getattr(model, "attn_mask", None) is not None
            and getattr(model, "text_pool_type", "argmax") in ("argmax", "eos", "first"))


def trimmed_length(tokens: torch.Tensor | np.ndarray) -> int:
    """Positions up to the last non-padding token of any text in the batch (numpy in: no torch op)."""
    used = (tokens != 0).any(0)
    used = np.flatnonzero(used.cpu().numpy() if isinstance(used, torch.Tensor) else used)
    return int(used.max()) + 1 if used.size else 1


def encode_text_trimmed(model: torch.nn.Module, tokens: torch.Tensor, n: Any = None) -> torch.Tensor:
    """open_clip's CLIP.encode_text, run only over the first L positions (L = longest text in the batch).
    `n` given (the ONNX export passes the input's symbolic length): tokens are taken as already trimmed."""
    from open_clip.transformer import text_global_pool

    if n is None:
        n = trimmed_length(tokens)
    tokens = tokens[:, :n]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:n].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:n, :n])
    x = model.ln_final(x)
    eos = getattr(model, "text_eos_id", None)  # open_clip >= 3.1 pools at an EOS id; 3.0 has no such argument
    x = text_global_pool(x, tokens, model.text_pool_type, **({"eos_token_id": eos} if eos is not None else {}))
    if model.text_projection is not None:
        x = model.text_projection(x) if isinstance(model.text_projection, torch.nn.Linear) else x @ model.text_projection
    return x
