"""Tiny open_clip + audio tower configs with random weights, made by the tests (never shipped).

The weights are written to a space folder and loaded back through the real checkpoint path, so the
product code never builds a random model itself.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TINY_AUDIO = {"arch": "conv", "sample_rate": 8000, "window_s": 2.0, "hop_s": 2.0, "n_fft": 256,
              "hop_length": 128, "n_mels": 32, "channels": [8, 16]}


def make_tiny_space(folder: Path, *, name: str = "test-tiny", seed: int = 0, audio: bool = True,
                    audio_seed: int | None = None, audio_dir: str = ".") -> Path:
    """`audio_seed`: the audio tower's own (else it follows the clip model's, from `seed`); `audio_dir`: the
    subfolder its weights go in. Two spaces that share their clip tower and not their audio tower need both: a
    clip folder's identity hashes every weights file beside its config."""
    import open_clip
    from safetensors.torch import save_file

    from mmretrieval.encoders.audio_tower import build_audio_tower

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CLIP)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": TINY_CLIP,
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
                           "interpolation": "bicubic", "resize_mode": "shortest"}}))
    space = {"name": name, "clip": {"config": "open_clip_config.json"}, "audio": None, "metric": "cosine"}
    if audio:
        if audio_seed is not None:
            torch.manual_seed(audio_seed)
        tower = build_audio_tower({**TINY_AUDIO, "embed_dim": TINY_CLIP["embed_dim"]})
        (folder / audio_dir).mkdir(exist_ok=True)
        torch.save(tower.state_dict(), folder / audio_dir / "audio_tower.pt")
        space["audio"] = {"config": {**TINY_AUDIO, "embed_dim": TINY_CLIP["embed_dim"]},
                          "weights": str(Path(audio_dir) / "audio_tower.pt")}
    (folder / "space.json").write_text(json.dumps(space, indent=2))
    return folder
