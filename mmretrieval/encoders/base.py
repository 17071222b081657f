"""The one contract every encoder keeps: a batch in, L2-normalised float32 ``[N, D]`` out, in order."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UsageError

# Dynamic int8 runs items faster one per core (each alone on its own thread, the plain graph's fused kernels)
# than in batches over every core once an item has this many tokens; below it the weights are most of an
# item's work, and a batch shares them. ViT-B-32's int8 towers on 2 Zen 4 cores, items/s one per core
# against batches of 32 over both: texts of 8 tokens 408 vs 702, 40: 157 vs 150, 48: 129 vs 119, 64: 101 vs
# 72, 77: 80 vs 55; images (50 tokens) 61.5 vs 59.7, and decoding then runs beside them (`ingest.embed`).
PER_CORE_MIN_TOKENS = 48


class Encoder(ABC):
    modality: str = ""

    def __init__(self, dim: int, device: torch.device) -> None:
        self.dim = dim
        self.device = device
        self._model: torch.nn.Module | Callable[[], torch.nn.Module] | None = None

    @property
    def model(self) -> torch.nn.Module:
        """The tower's torch module. Given as a loader (the open_clip family gives one: towers read back from
        cached ONNX Runtime exports never need the module), it is built at first use (the torch path, training)."""
        if self._model is not None and not isinstance(self._model, torch.nn.Module):
            self._model = self._model()
        if self._model is None:
            raise AttributeError(f"{type(self).__name__} has no torch model")
        return self._model

    @model.setter
    def model(self, model: torch.nn.Module | Callable[[], torch.nn.Module]) -> None:
        self._model = model

    @property
    def model_built(self) -> bool:
        return isinstance(self._model, torch.nn.Module)

    def check_args(self, inputs: Sequence[Any], batch_size: int) -> None:
        if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
            raise UsageError(f"{type(self).__name__}.encode takes a list of inputs, got {type(inputs).__name__}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise UsageError(f"batch_size must be a positive integer, got {batch_size!r}")

    def encode(self, inputs: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        """Encode `inputs` in batches of `batch_size`; row i of the result is inputs[i]."""
        self.check_args(inputs, batch_size)
        out = np.empty((len(inputs), self.dim), dtype=np.float32)
        for start in range(0, len(inputs), batch_size):
            chunk = list(inputs[start:start + batch_size])
            with torch.inference_mode():
                emb = self._encode_batch(chunk)
            out[start:start + len(chunk)] = normalize(emb)
        return out

    def per_core(self) -> int:
        """Cores to encode on item by item, each item on the thread that decoded it (`ingest.embed`), where
        that is faster than batches over every core and gives the same vectors; 0: batches."""
        return 0

    def encode_here(self, inputs: Sequence[Any]) -> np.ndarray:
        """`encode`, each item alone on the calling thread (where `per_core` says so)."""
        raise NotImplementedError(f"{type(self).__name__} encodes in batches")

    def warm_up(self) -> None:
        """Do now what the first `encode` would do once (open its ONNX Runtime session: 0.2-1.3 s for ViT-B-32's
        towers; or build its torch module). Safe from another thread."""
        opener = getattr(getattr(self, "runner", None), "open", None)
        if opener is not None:
            opener()
        elif self._model is not None:
            self.model  # noqa: B018 (built now if it was left to first use)

    @abstractmethod
    def _encode_batch(self, batch: list[Any]) -> torch.Tensor | np.ndarray:
        """Return un-normalised embeddings ``[len(batch), dim]``."""


def to_device(tensors: Sequence[torch.Tensor], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Stack a batch onto `device` in `dtype`. To a GPU it goes through page-locked (pinned) host memory, so the
    copy runs by DMA without a staging copy, and is cast there rather than on the CPU."""
    if device.type != "cuda":
        return torch.stack(list(tensors)).to(device, dtype)
    first = tensors[0]
    # torch's caching host allocator hands the same pinned block back once the copy from it is done
    host = torch.empty((len(tensors), *first.shape), dtype=first.dtype, pin_memory=True)
    torch.stack(list(tensors), out=host)
    return host.to(device, non_blocking=True).to(dtype)


def normalize(emb: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(emb, np.ndarray):  # from another runtime: no torch op (it would wake torch's thread pool)
        v = emb.astype(np.float32, copy=False)
        v = v / np.maximum(np.sqrt(np.einsum("ij,ij->i", v, v))[:, None], 1e-12)
    else:
        v = F.normalize(emb.float(), dim=-1).cpu().numpy().astype(np.float32, copy=False)
    if not np.isfinite(v).all():
        raise FloatingPointError("encoder produced non-finite values")
    return v
