"""The open_clip family's export hook: its text and image towers as `onnx_runtime.TowerExport`s.

Only models whose every attention block `packed.SelfAttention` reproduces export (open_clip's CLIP); the traced
copy keeps the sequence length symbolic, and int8 is dynamic (activations quantised per item)."""
from __future__ import annotations

import copy

import torch
from torch import nn

from .onnx_runtime import TowerExport
from .packed import SelfAttention, self_attention_block


def exportable(model: nn.Module) -> bool:
    """Only models whose every block `SelfAttention` reproduces (open_clip's CLIP)."""
    import open_clip
    from open_clip.transformer import ResidualAttentionBlock

    blocks = [m for m in model.modules() if type(m) is ResidualAttentionBlock]
    return type(model) is open_clip.CLIP and bool(blocks) and all(self_attention_block(b) for b in blocks)


def export_copy(model: nn.Module, modality: str) -> nn.Module:
    """A float copy of the `modality` tower whose attention keeps the sequence length symbolic (see
    `packed.SelfAttention`). The other tower is shared, not copied (the trace never reaches it): ViT-B-32's
    image tower is 350 MB, its text tower 250 MB, and a first run held the model and a whole copy at once."""
    own = [c for name, c in model.named_children() if (name == "visual") == (modality == "image")]
    memo = {id(c): c for c in model.children() if not any(c is o for o in own)}
    m = copy.deepcopy(model, memo).eval()
    for t in [*m.parameters(recurse=False), *m.buffers(recurse=False)]:
        if t.is_floating_point():
            t.data = t.data.float()
    for part in (c for c in m.children() if id(c) not in memo):
        part.float()
        for blk in part.modules():
            if self_attention_block(blk):
                blk.attn = SelfAttention(blk.attn, pack=False)
    return m


class ClipTower(nn.Module):
    """What a CLIP tower computes from its input (tokens, pixels), as one module to export."""

    def __init__(self, model: nn.Module, modality: str) -> None:
        super().__init__()
        self.model = model
        self.modality = modality

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.modality == "text":  # tokens already trimmed: their length stays symbolic in the export
            from .text import encode_text_trimmed

            return encode_text_trimmed(self.model, x, n=x.shape[1])
        return self.model.encode_image(x)


def probe(model: nn.Module, modality: str) -> torch.Tensor:
    """Fixed inputs of the tower: three texts (one shorter, padded) or three images of its size."""
    g = torch.Generator().manual_seed(0)
    if modality == "text":
        vocab = int(model.token_embedding.num_embeddings)
        ctx = int(model.positional_embedding.shape[0])
        n = min(12, ctx)
        tok = torch.randint(1, vocab - 2, (3, n), generator=g)
        tok[:, 0] = vocab - 2                      # start of text
        tok[0, 5:] = 0                             # a shorter text in the batch: padded
        tok[0, 4], tok[1:, n - 1] = vocab - 1, vocab - 1  # end of text
        return tok
    size = model.visual.image_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return torch.randn(3, 3, h, w, generator=g)


def clip_export(model: nn.Module, modality: str) -> TowerExport:
    """The `modality` ("text" or "image") tower of an fp32 open_clip CLIP `model` for `onnx_runtime.load_tower`."""
    first = probe(model, modality)
    if modality == "text":  # texts of another length too: the export must not have fixed one
        shorter = first[1:, :7].clone()
        shorter[:, 6] = first[1, -1]
        return TowerExport(lambda: ClipTower(export_copy(model, "text"), "text"), ClipTower(model, "text"),
                           "tokens", {1: "tokens"}, [first, shorter], batch_probe=first[1:])  # full-length ones
    return TowerExport(lambda: ClipTower(export_copy(model, "image"), "image"), ClipTower(model, "image"),
                       "pixels", {}, [first])
