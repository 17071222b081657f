"""The one contract every encoder keeps: a batch in, L2-normalised float32 ``[N, D]`` out, in order."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .arrays import check_args, unit_rows
from . import torch_gate


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
        check_args(type(self).__name__, inputs, batch_size)

    def encode(self, inputs: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        """Encode `inputs` in batches of `batch_size`; row i of the result is inputs[i]."""
        self.check_args(inputs, batch_size)
        out = np.empty((len(inputs), self.dim), dtype=np.float32)
        for start in range(0, len(inputs), batch_size):
            chunk = list(inputs[start:start + batch_size])
            with torch_gate.forward():
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
        return unit_rows(emb)
    return unit_rows(F.normalize(emb.float(), dim=-1).cpu().numpy())
