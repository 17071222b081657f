"""Build a usable `Space` (towers with real weights + encoders) from a `SpaceSpec`."""
from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..encoders.audio import AudioEncoder
from ..encoders.image import ImageEncoder
from ..encoders.packed import pack_transformer_blocks
from ..encoders.text import TextEncoder
from ..errors import MissingWeightsError, SpaceError, UnsupportedModalityError, UsageError, WeightsMismatchError
from .precision import DTYPES, parse_precision, reduced
from .spec import SpaceSpec, fingerprint_of
from .weights import ResolvedClip, file_sha256, resolve_audio_weights, resolve_clip

log = logging.getLogger(__name__)

FINGERPRINT_VERSION = 1


def _clip_configs(resolved: ResolvedClip) -> tuple[dict[str, Any], dict[str, Any]]:
    """The open_clip model config and the final preprocessing config, without building the model."""
    import open_clip
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    pre = asdict(PreprocessCfg())
    if resolved.model_name.startswith("local-dir:"):
        data = json.loads((Path(resolved.model_name[len("local-dir:"):]) / "open_clip_config.json").read_text())
        if "model_cfg" not in data:
            raise SpaceError(f"open_clip_config.json in {resolved.model_name[10:]} lacks 'model_cfg'")
        model_cfg = data["model_cfg"]
        pre = merge_preprocess_dict(pre, data.get("preprocess_cfg", {}))
    else:
        model_cfg = open_clip.get_model_config(resolved.model_name)
        if model_cfg is None:
            raise SpaceError(f"no open_clip config for {resolved.model_name}")
        model_cfg = dict(model_cfg)
        if resolved.quick_gelu:
            model_cfg["quick_gelu"] = True
    pre = merge_preprocess_dict(pre, resolved.force_preprocess)
    size = model_cfg.get("vision_cfg", {}).get("image_size", 224)
    pre["size"] = size
    return model_cfg, dict(pre)


# How images are decoded before the model's preprocessing: JPEGs decode in the DCT domain to no less
# than twice the model's input size (see encoders.image.load_image). It changes pixels slightly, so it
# is part of the fingerprint.
IMAGE_DECODE = {"jpeg_draft": "shorter side >= 2x input size", "version": 1}


def space_identity(spec: SpaceSpec, resolved: ResolvedClip | None = None,
                   precision: dict[str, str] | None = None) -> dict[str, Any]:
    """Everything that decides where vectors land; its hash is the fingerprint. Needs the weights.

    `precision` (tower -> fp32/bf16) enters only for towers not in fp32, so the reference keeps the
    fingerprint it had before precision was recorded."""
    resolved = resolved or resolve_clip(spec.clip.model, spec.clip.pretrained)
    model_cfg, pre = _clip_configs(resolved)
    audio = None
    if spec.audio is not None:
        w = resolve_audio_weights(spec.audio.weights, spec.name)
        audio = {"config": spec.audio.config, "weights": "sha256:" + file_sha256(w)}
    ident = {
        "version": FINGERPRINT_VERSION,
        "metric": spec.metric,
        "normalized": True,
        "clip": {"model_cfg": model_cfg, "weights": resolved.identity},
        "preprocess": pre,
        "image_decode": IMAGE_DECODE,
        "audio": audio,
    }
    low = reduced({t: p for t, p in (precision or {}).items() if t in spec.modalities})
    if low:
        ident["precision"] = low
    return ident


class Space:
    """A loaded shared space: one encoder per modality, all into the same L2-normalised space."""

    def __init__(self, spec: SpaceSpec, *, device: str = "cpu", num_threads: int | None = None,
                 precision: str | dict[str, str] = "fp32", inference: bool = True) -> None:
        """`precision`: ``fp32`` (the reference, the default here), ``bf16``, ``auto`` (by what the CPU
        does natively, see `space.precision`) or ``tower=format`` pairs; the index remembers its own.
        `inference=False` keeps the model trainable: no prepacked weights (see `encoders.packed`)."""
        import open_clip

        if num_threads:
            torch.set_num_threads(num_threads)
        self.spec = spec
        self.device = torch.device(device)
        self.resolved = resolve_clip(spec.clip.model, spec.clip.pretrained)
        self.precision = parse_precision(precision, device)
        self.identity = space_identity(spec, self.resolved, self.precision)
        self.fingerprint = fingerprint_of(self.identity)
        model = _create_clip(self.resolved, self.device, spec.name)
        # The transform is built from the config resolved above (the tag's mean/std/interpolation/resize
        # mode), not threaded through open_clip's keyword arguments, which change between releases.
        preprocess = _image_transform(self.identity["preprocess"])
        model.eval()
        _cast_towers(model, self.precision)
        if inference and self.device.type == "cpu":
            pack_transformer_blocks(model)
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(self.resolved.model_name)
        self.dim = int(model.text_projection.shape[-1] if getattr(model, "text_projection", None) is not None
                       and isinstance(model.text_projection, torch.Tensor) else _probe_dim(model))
        self.text = TextEncoder(model, self.tokenizer, self.dim, self.device)
        size = self.identity["preprocess"]["size"]
        self.image = ImageEncoder(model, preprocess, self.dim, self.device,
                                  draft_to=2 * (min(size) if isinstance(size, (list, tuple)) else int(size)))
        self.audio: AudioEncoder | None = None
        if spec.audio is not None:
            self.audio = AudioEncoder.from_weights(resolve_audio_weights(spec.audio.weights, spec.name), spec.audio,
                                                   self.dim, self.device,
                                                   dtype=DTYPES[self.precision["audio"]])

    @property
    def modalities(self) -> tuple[str, ...]:
        """The registered modalities this space has a tower for."""
        from ..modalities import modalities

        return tuple(m.name for m in modalities() if m.encoder(self) is not None)

    def encoder(self, modality: str):
        from ..modalities import get_modality

        try:
            enc = get_modality(modality).encoder(self)
        except UsageError as e:
            raise SpaceError(str(e)) from None
        if enc is None:
            raise UnsupportedModalityError(f"space {self.spec.name!r} has no {modality} tower")
        return enc


def _create_clip(resolved: ResolvedClip, device: torch.device, space_name: str) -> torch.nn.Module:
    """The open_clip model with its real weights (`require_pretrained`: never random ones)."""
    import open_clip

    kwargs: dict[str, Any] = dict(device=device, require_pretrained=True)
    if resolved.checkpoint is not None:
        kwargs["pretrained"] = resolved.checkpoint
    if resolved.quick_gelu:
        kwargs["force_quick_gelu"] = True
    try:
        return open_clip.create_model(resolved.model_name, **kwargs)
    except (RuntimeError, AssertionError, ValueError, KeyError) as e:
        text = str(e).strip() or type(e).__name__
        low = text.lower()
        if "allocate" in low or "out of memory" in low:
            raise
        if "pretrained" in low and "not" in low and "size mismatch" not in low:
            raise MissingWeightsError(f"open_clip could not load weights for {space_name}: {text}") from None
        # Loading a state dict into the model failed (missing or unexpected keys, other shapes, a
        # position embedding of another width...): the file is another architecture's.
        where = resolved.checkpoint or resolved.model_name
        raise WeightsMismatchError(
            f"the weights for space {space_name!r} ({where}) do not fit the open_clip model "
            f"{resolved.model_name}: {text.splitlines()[0][:300]}") from None


def _image_transform(pre: dict[str, Any]):
    """open_clip's own inference transform for a final preprocessing config."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    known = set(PreprocessCfg.__dataclass_fields__)
    return image_transform_v2(PreprocessCfg(**{k: v for k, v in pre.items() if k in known}), is_train=False)


def _cast_towers(model: torch.nn.Module, precision: dict[str, str]) -> None:
    """Store the image and text towers' weights in their format (bf16 weights, not autocast: casting
    the weights on every call made autocast slower than fp32 on the image tower)."""
    if precision["image"] != "fp32":
        model.visual.to(DTYPES[precision["image"]])
    if precision["text"] != "fp32":
        dtype = DTYPES[precision["text"]]
        if hasattr(model, "text") and isinstance(model.text, torch.nn.Module):  # CustomTextCLIP
            model.text.to(dtype)
            return
        for name in ("token_embedding", "transformer", "ln_final"):
            getattr(model, name).to(dtype)
        for name in ("positional_embedding", "text_projection", "attn_mask"):
            t = getattr(model, name, None)
            if isinstance(t, torch.nn.Parameter):
                t.data = t.data.to(dtype)
            elif isinstance(t, torch.Tensor):
                setattr(model, name, t.to(dtype))
            elif isinstance(t, torch.nn.Module):
                t.to(dtype)


def _probe_dim(model: torch.nn.Module) -> int:
    with torch.no_grad():
        import open_clip

        tok = open_clip.tokenize(["probe"])
        return int(model.encode_text(tok).shape[-1])

