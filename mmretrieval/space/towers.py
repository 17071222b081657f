"""Towers: the networks of a space. A space is a set of named towers, each of a registered family, each
encoding some modalities into the one shared space.

A family declares the modalities it can encode and the number formats it runs in; it describes a tower's
identity (what decides where its vectors land: it enters the space's fingerprint under the tower's own name, and
each tower also gets a fingerprint of its own), lists its weights files (`mmr spaces`) and downloads them
(`mmr fetch`), and loads a tower with real weights into encoders. Built in: ``open_clip`` (text + image towers of
an open_clip model) and ``audio`` (the audio tower architectures of `encoders.audio_tower.AUDIO_ARCHS`); their
identities sit at the top level of the space's, as they always have, so existing fingerprints hold. A family
whose networks torch can export gets ONNX Runtime (a backend, in fp32) and int8 (a precision) through one hook:
its `load` calls `onnx_tower` with a `TowerExport` of the network, and `encoders.onnx_runtime` exports,
quantises, verifies and caches it. Adding a family = one class registered with `register_tower_family`.
"""
from __future__ import annotations

import json
import logging
import threading
from abc import ABC, abstractmethod
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..encoders.bpe import for_text_config
from ..encoders.exported_image import clip_pixels
from ..errors import MissingWeightsError, SpaceError, UnsupportedPrecisionError, WeightsMismatchError
from .image_decode import IMAGE_DECODES, JPEG_DRAFT
from .precision import dtype_of
from .spec import TowerSpec
from .cache import cache_root
from .weights import (ResolvedClip, WeightsFile, audio_weights_status, clip_weights_status, file_sha256,
                      local_checkpoints, offline, resolve_audio_weights, resolve_clip, resolve_cached_download)

if TYPE_CHECKING:
    import torch

    from ..encoders.onnx_runtime import TowerExport
    from ..encoders.ort_tower import OrtTower

log = logging.getLogger(__name__)
REDUCED = ("bf16", "fp16")  # the formats a torch tower's weights are cast to


class TowerFamily(ABC):
    name: str = ""
    # The modalities a tower of this family can encode (empty: whatever its space.json entry says).
    modalities: tuple[str, ...] = ()
    # The number formats its towers run in; ``auto`` picks among them, anything else is refused.
    precisions: tuple[str, ...] = ("fp32",)
    # Built-in families only: the identity's parts sit at the top level of the space's (fingerprints made before
    # towers were namespaced stay as they were). Others go under "tower:NAME".
    flat_identity: bool = False

    @abstractmethod
    def identity(self, tower: TowerSpec, space: Any) -> dict[str, Any]:
        """What decides where this tower's vectors land (needs the weights; no model is built)."""

    @abstractmethod
    def load(self, tower: TowerSpec, space: Any) -> dict[str, Any]:
        """Build the tower with its real weights; returns modality -> encoder."""

    def weights(self, tower: TowerSpec, space_name: str) -> list[WeightsFile]:
        """The tower's weights files, found or not, and where each goes (touches no network)."""
        return []

    def identity_files(self, tower: TowerSpec, space: Any) -> list[str] | None:
        """The files `identity` reads (after it ran): unchanged, the identity is too (`space.passport`).
        None: the family cannot say, and its spaces have no passport."""
        return None

    def export_key(self, tower: TowerSpec, space: Any) -> str:
        """Under which name the tower's ONNX exports are cached: what decides its network and weights."""
        return space.tower_fingerprints[tower.name]

    def onnx_tower(self, tower: TowerSpec, space: Any, modality: str, make: Callable[[], TowerExport]) -> OrtTower:
        """The export hook: the tower's `modality` network under ONNX Runtime in the space's precision for it
        (fp32: a backend, the same vectors; int8: quantised, checked against fp32 and refused, for good, where it
        moves them). Read back where exported before; else `make()` describes the network and it is exported
        (called only then, so a cached tower needs no torch model). A family that runs in int8 lists it in
        `precisions` and sets the returned runner on its encoder."""
        from ..encoders import onnx_runtime as ort

        precision = space.precision[modality]
        why = _no_onnx(space, precision)
        if why is not None:
            error = UnsupportedPrecisionError if precision == "int8" else SpaceError
            raise error(f"space {space.spec.name!r}: {modality} in {precision} needs ONNX Runtime, but {why}")
        _note_cpu_tower(space, modality)
        return ort.load_tower(make, modality, precision, self.export_key(tower, space), cache_root())

    def fetch(self, tower: TowerSpec, space_name: str, progress: bool = False) -> None:
        """Download the tower's missing weights into their caches (`weights` then finds them)."""
        missing = [w for w in self.weights(tower, space_name) if w.found is None]
        if missing:
            raise MissingWeightsError(f"the {self.name} tower {tower.name!r} of space {space_name!r} cannot be "
                                      f"downloaded: " + "; ".join(f"put {w.role} at {w.put_at}" for w in missing))


TOWER_FAMILIES: dict[str, TowerFamily] = {}


def register_tower_family(family: TowerFamily, *, replace: bool = False) -> TowerFamily:
    if family.name in TOWER_FAMILIES and not replace:
        raise SpaceError(f"a tower family named {family.name!r} is already registered")
    TOWER_FAMILIES[family.name] = family
    return family


def tower_family(name: str) -> TowerFamily:
    try:
        return TOWER_FAMILIES[name]
    except KeyError:
        raise SpaceError(f"unknown tower family {name!r}; valid: {', '.join(TOWER_FAMILIES)}") from None


def clip_configs(resolved: ResolvedClip) -> tuple[dict[str, Any], dict[str, Any]]:
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


class OpenClipFamily(TowerFamily):
    """An open_clip model: its text and image towers. Weights through open_clip's tags, caches or files."""

    name = "open_clip"
    modalities = ("text", "image")
    precisions = ("fp32", "bf16", "fp16", "int8")
    flat_identity = True

    def weights(self, tower: TowerSpec, space_name: str) -> list[WeightsFile]:
        return [clip_weights_status(tower.config.model, tower.config.pretrained)]

    def fetch(self, tower: TowerSpec, space_name: str, progress: bool = False) -> None:
        resolve_clip(tower.config.model, tower.config.pretrained)  # downloads through open_clip (hub progress bar)

    def resolved(self, tower: TowerSpec, space: Any) -> ResolvedClip:
        cache = space.__dict__.setdefault("_resolved", {})
        if tower.name not in cache:
            cache[tower.name] = resolve_clip(tower.config.model, tower.config.pretrained)
        return cache[tower.name]

    def identity_files(self, tower: TowerSpec, space: Any) -> list[str]:
        resolved = self.resolved(tower, space)
        local = tower.config.local_dir
        if local is not None:
            return [str(local / "open_clip_config.json"), *map(str, local_checkpoints(local))]
        return [resolved.checkpoint] if resolved.checkpoint else []

    def export_key(self, tower: TowerSpec, space: Any) -> str:
        """Its network and weights, not how its inputs are decoded and prepared (indexes of one model at two JPEG
        decode scales share their exports)."""
        from .spec import fingerprint_of

        part = self.identity(tower, space)
        return fingerprint_of({k: v for k, v in part.items() if k not in ("preprocess", "image_decode")})

    def identity(self, tower: TowerSpec, space: Any) -> dict[str, Any]:
        resolved = self.resolved(tower, space)
        model_cfg, pre = clip_configs(resolved)
        return {"clip": {"model_cfg": model_cfg, "weights": resolved.identity}, "preprocess": pre,
                "image_decode": IMAGE_DECODES[getattr(space, "jpeg_draft", JPEG_DRAFT)]}

    def load(self, tower: TowerSpec, space: Any) -> dict[str, Any]:
        import open_clip
        import torch

        from ..encoders.image import ImageEncoder
        from ..encoders.text import TextEncoder

        resolved = self.resolved(tower, space)
        model_cfg, pre_cfg = clip_configs(resolved)
        # The transform is built from the config resolved above (the tag's mean/std/interpolation/resize
        # mode), not threaded through open_clip's keyword arguments, which change between releases.
        preprocess = _image_transform(pre_cfg)
        clip = ClipModel(resolved, space)
        runners = _onnx_runners(clip, tower, space)  # exported from the fp32 modules, before they change
        tokenizer = open_clip.get_tokenizer(resolved.model_name)
        # Queries tokenize in numpy where the model uses CLIP's tokenizer: the same ids, no torch on that path.
        query_tokenizer = for_text_config(model_cfg.get("text_cfg") or {}, resolved.model_name) or tokenizer
        dim = model_cfg.get("embed_dim")
        if not isinstance(dim, int):
            model = clip()
            dim = int(model.text_projection.shape[-1] if getattr(model, "text_projection", None) is not None
                      and isinstance(model.text_projection, torch.Tensor) else _probe_dim(model))
        if space.spec.dim is not None and dim != space.spec.dim:
            raise SpaceError(f"space {space.spec.name!r} declares dim {space.spec.dim}, but its open_clip model "
                             f"{resolved.model_name} embeds into {dim}")
        # What training and evaluation reach for on the space (`Space.model` builds the model at first use).
        space.resolved, space.clip_model, space.preprocess, space.tokenizer, space.dim = (resolved, clip, preprocess,
                                                                                          tokenizer, dim)
        size = pre_cfg["size"]
        # The encoders get the loader: where towers run from cached exports the torch modules (~1.3 s and ~1.2 GB
        # for ViT-B-32, most of a one-off text query's time and memory) are built only if something needs them.
        encoders = {"text": TextEncoder(clip, query_tokenizer, dim, space.device, runner=runners.get("text")),
                    "image": ImageEncoder(clip, preprocess, dim, space.device, runner=runners.get("image"),
                                          draft_to=space.jpeg_draft * (min(size) if isinstance(size, (list, tuple))
                                                                        else int(size)),
                                          tokens=_vit_tokens(model_cfg))}
        _settle_backends(encoders, runners, tower, space)
        # What a one-off query can run without any of this (`space.passport`).
        if "text" in runners and query_tokenizer is not tokenizer:
            space.note_query_tower("text", {"kind": "clip-text", "export": str(runners["text"].path.parent),
                                            "precision": space.precision["text"], "dim": dim,
                                            "text_cfg": model_cfg.get("text_cfg") or {},
                                            "model_name": resolved.model_name})
        if "image" in runners and clip_pixels(pre_cfg) is not None:
            space.note_query_tower("image", {"kind": "clip-image", "export": str(runners["image"].path.parent),
                                             "precision": space.precision["image"], "dim": dim,
                                             "preprocess": pre_cfg, "draft_to": encoders["image"].draft_to})
        if all(space.backends[m] == "onnx" for m in encoders):
            clip.release()  # built only to export: ~600 MB for ViT-B-32, built again if something asks
        return encoders


class ClipModel:
    """An open_clip tower's torch model, built once, when first needed: for an export (`fp32`: the modules as
    loaded) or for torch inference and training (`()`: cast to the space's precision, weights prepacked)."""

    def __init__(self, resolved: ResolvedClip, space: Any) -> None:
        self._resolved, self._space = resolved, space
        self._loaded: torch.nn.Module | None = None
        self._ready: torch.nn.Module | None = None
        self._lock = threading.RLock()

    def fp32(self) -> torch.nn.Module:
        import torch

        with self._lock:
            if self._ready is not None:
                raise SpaceError("the torch model was already cast for inference: export before building it")
            if self._loaded is None:  # on the CPU: exports trace there, and a GPU gets the model cast (below)
                self._loaded = _create_clip(self._resolved, torch.device("cpu"), self._space.spec.name).eval()
            return self._loaded

    def __call__(self) -> torch.nn.Module:
        from ..encoders.packed import pack_transformer_blocks

        with self._lock:
            if self._ready is None:
                model = self.fp32()
                _cast_towers(model, self._space.precision, self._space.device)
                model.to(self._space.device)
                if self._space.inference and self._space.device.type == "cpu":
                    pack_transformer_blocks(model)
                self._ready, self._loaded = model, None
            return self._ready

    def release(self) -> None:
        """Forget the modules as loaded for an export (not the model built for inference)."""
        with self._lock:
            self._loaded = None


def _vit_tokens(model_cfg: dict[str, Any]) -> int | None:
    """Patches + 1 of an open_clip ViT image tower from its config (None: not a plain open_clip ViT)."""
    v = model_cfg.get("vision_cfg", {})
    if "timm_model_name" in v or not isinstance(v.get("layers"), int) or "patch_size" not in v:
        return None
    size, patch = v.get("image_size", 224), v["patch_size"]
    size, patch = (size, size) if isinstance(size, int) else size, (patch, patch) if isinstance(patch, int) else patch
    return (size[0] // patch[0]) * (size[1] // patch[1]) + 1


class AudioFamily(TowerFamily):
    """An audio tower (`encoders.audio_tower.AUDIO_ARCHS`) projecting into the space of the other towers."""

    name = "audio"
    modalities = ("audio",)
    precisions = ("fp32", "bf16", "fp16", "int8")
    flat_identity = True

    def weights(self, tower: TowerSpec, space_name: str) -> list[WeightsFile]:
        return [audio_weights_status(tower.config.weights, space_name)]

    def fetch(self, tower: TowerSpec, space_name: str, progress: bool = False) -> None:
        if isinstance(tower.config.weights, dict):
            resolve_cached_download(tower.config.weights, space_name, progress=progress)
        else:
            super().fetch(tower, space_name, progress)

    def identity_files(self, tower: TowerSpec, space: Any) -> list[str]:
        return [str(resolve_audio_weights(tower.config.weights, space.spec.name))]

    def identity(self, tower: TowerSpec, space: Any) -> dict[str, Any]:
        w = resolve_audio_weights(tower.config.weights, space.spec.name)
        return {"audio": {"config": tower.config.config, "weights": "sha256:" + file_sha256(w)}}

    def load(self, tower: TowerSpec, space: Any) -> dict[str, Any]:
        import torch

        from ..encoders.audio import AudioEncoder

        path = resolve_audio_weights(tower.config.weights, space.spec.name)
        precision = space.precision["audio"]
        device = space.device if precision != "int8" else torch.device("cpu")  # int8: ONNX Runtime, on the CPU
        emulated = precision == "fp16" and device.type == "cpu"
        enc = AudioEncoder.from_weights(path, tower.config, space.dim, device,
                                        dtype=torch.float32 if emulated else dtype_of(precision, "fp32"))
        if emulated:
            fp16_on_cpu(enc.tower)
        space.backends["audio"] = "torch"
        if precision == "int8":  # the network under ONNX Runtime, static int8; the front end stays in torch
            from ..encoders.audio_export import audio_export
            from ..encoders.audio_tower import splits

            if not splits(enc.tower):
                raise UnsupportedPrecisionError(
                    f"space {space.spec.name!r}: audio in int8 needs ONNX Runtime, but its "
                    f"{tower.config.config.get('arch')!r} tower does not split its front end (features/embed)")
            enc.runner = self.onnx_tower(tower, space, "audio", lambda: audio_export(enc))
            space.backends["audio"] = "onnx"
        if precision in ("fp32", "int8") and _no_onnx(space, "fp32") is None:
            # bf16 and fp16 towers have none: ONNX Runtime's CPU kernels are fp32, whose vectors differ from theirs
            space.offer_query_tower("audio", lambda: _audio_query_tower(enc, tower, space))
        return {"audio": enc}


# A one-off audio query's vector against the loaded tower's, normalised (the numpy front end's float64 FFT moves
# the features of near-silent bins by ~1e-3 where torch's fp32 FFT rounds them: vectors ~4e-6 apart).
AUDIO_FRONT_MAX_DIFF = 1e-4


def _audio_query_tower(enc: Any, tower: TowerSpec, space: Any) -> dict[str, Any] | None:
    """The audio tower in the form a one-off query runs without torch: its network exported (the int8 export the
    space runs, else an fp32 one made now) and its front end as data (`encoders.audio_front`), checked to give
    the loaded tower's vectors on held-out signals. None: the tower does not describe its front end."""
    import numpy as np
    import torch

    from ..encoders.audio import calibration_waves
    from ..encoders.audio_export import audio_export
    from ..encoders.audio_tower import front_end
    from ..index.segments import atomic_write
    from ..encoders import torch_gate

    front = front_end(enc.tower)
    if front is None:
        return None
    precision = space.precision["audio"]
    runner = enc.runner if precision == "int8" else tower_family(tower.family).onnx_tower(
        tower, space, "audio", lambda: audio_export(enc))
    waves = calibration_waves(enc.sample_rate, int(round(enc.window_s * enc.sample_rate)), n=8, seed=2)
    with torch_gate.forward():
        ref = enc.tower.features(torch.from_numpy(waves).to(enc.device)).float().cpu().numpy()
    a, b = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (runner(ref), runner(front(waves))))
    diff = float(np.abs(a - b).max())
    if diff > AUDIO_FRONT_MAX_DIFF:
        raise SpaceError(f"the numpy front end does not reproduce the {type(enc.tower).__name__} tower's "
                         f"(vectors {diff:.1e} apart)")
    path = runner.path.parent / "audio.front.npz"
    atomic_write(path, front.save)
    return {"kind": "audio-tower", "export": str(runner.path.parent), "precision": precision, "dim": enc.dim,
            "front": str(path), "sample_rate": enc.sample_rate, "window_s": enc.window_s, "hop_s": enc.hop_s,
            "min_samples": enc.min_samples}


register_tower_family(OpenClipFamily())
register_tower_family(AudioFamily())


def weights_status(spec: Any) -> list[WeightsFile]:
    """Every weights file a space needs, found or not, tower by tower. Touches no network."""
    return [w for t in spec.towers for w in tower_family(t.family).weights(t, spec.name)]


def fetch_weights(spec: Any, progress: bool = True) -> list[WeightsFile]:
    """Download whatever a space lacks into the standard caches (the Hugging Face hub cache for open_clip tags,
    the project's cache for audio towers; each family knows its own). Offline, the error says which file goes
    where."""
    missing = [w for w in weights_status(spec) if w.found is None]
    if not missing:
        return weights_status(spec)
    if offline():
        raise MissingWeightsError("offline (MMR_OFFLINE/HF_HUB_OFFLINE is set); put these files in place by hand:\n"
                                  + "\n".join(_by_hand(w) for w in missing))
    for t in spec.towers:
        family = tower_family(t.family)
        for w in family.weights(t, spec.name):
            if w.found is None:
                if not w.source:
                    raise MissingWeightsError(f"{w.role} weights of space {spec.name!r} cannot be downloaded: "
                                              f"{_by_hand(w)}")
                family.fetch(t, spec.name, progress)
                break
    return weights_status(spec)


def _by_hand(w: WeightsFile) -> str:
    return f"  {w.role}: " + (f"download {w.source} and put it at {w.put_at}" if w.source else f"put it at {w.put_at}")


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


def _backend_key(tower: TowerSpec, space: Any, modality: str) -> str:
    from ..encoders.onnx_runtime import cpu_signature

    return f"{space.tower_fingerprints[tower.name]}|{modality}|{space.precision[modality]}|{cpu_signature()}"


def _no_onnx(space: Any, precision: str = "fp32") -> str | None:
    """Why a tower in `precision` cannot run under ONNX Runtime here (None: it can, if its model exports).
    ONNX Runtime computes on the CPU: on another device only int8 towers use it (an index built in int8 on a
    CPU, updated on a GPU machine, keeps its vectors; its other towers run on the GPU)."""
    from ..encoders import onnx_runtime as ort

    if not ort.available():
        return "ONNX Runtime is not installed (pip install onnxruntime onnx)"
    if space.device.type != "cpu" and precision != "int8":
        return f"the {space.device.type} device (ONNX Runtime runs the towers on the CPU)"
    return None


def _note_cpu_tower(space: Any, modality: str) -> None:
    if space.device.type != "cpu":
        log.warning("space %s: the %s tower is in int8, which runs under ONNX Runtime on the CPU, not the %s "
                    "device (this index was built in int8)", space.spec.name, modality, space.device.type)


def _not_exportable(model: torch.nn.Module, modality: str) -> str | None:
    from ..encoders.clip_export import exportable
    from ..encoders.text import can_trim

    if exportable(model) and (modality != "text" or can_trim(model)):
        return None
    return f"{type(model).__name__} cannot be exported (open_clip CLIP models can)"


def _onnx_runners(clip: ClipModel, tower: TowerSpec, space: Any) -> dict[str, Any]:
    """The towers that run (or may run, if measured faster) under ONNX Runtime: read back from the cache where
    they were exported before (the model is then not built), else exported from `clip` and verified."""
    from ..encoders import onnx_runtime as ort
    from ..encoders.clip_export import clip_export
    from .backend import backend_for, remembered

    family = tower_family(tower.family)
    runners: dict[str, Any] = {}
    key = family.export_key(tower, space) if _no_onnx(space, "int8") is None else ""
    for modality in ("text", "image"):
        precision = space.precision[modality]
        why, cached = _no_onnx(space, precision), None
        if why is None and backend_for(space.backend, precision, True) != "torch":
            cached = ort.cached_tower(modality, precision, key, cache_root())
            if cached is None:  # to be exported: can this model be?
                why = _not_exportable(clip.fp32(), modality)
        choice = backend_for(space.backend, precision, why is None)
        if choice is None:  # auto, fp32: the faster one, measured once per tower and CPU
            choice = remembered(cache_root() / "backends.json", _backend_key(tower, space, modality)) or "measure"
        if choice != "torch" and why is not None:
            error = UnsupportedPrecisionError if precision == "int8" else SpaceError
            raise error(f"space {space.spec.name!r}: {modality} in {precision} needs ONNX Runtime, but {why}")
        space.backends[modality] = choice
        if choice != "torch":
            runners[modality] = cached or family.onnx_tower(tower, space, modality,
                                                            lambda m=modality: clip_export(clip.fp32(), m))
    return runners


def _settle_backends(encoders: dict[str, Any], runners: dict[str, Any], tower: TowerSpec, space: Any) -> None:
    """Where fp32 was left to measurement: time torch and ONNX Runtime on the tower's own workload (a
    one-text query; a batch of 8 images), remember the faster, keep only it."""
    import torch

    from ..encoders.onnx_runtime import race
    from .backend import remember

    for modality, enc in encoders.items():
        if space.backends.get(modality) != "measure":
            continue
        if modality == "text":
            work = ["a photo of a dog running on the beach"]
        else:
            size = enc.model.visual.image_size
            h, w = (size, size) if isinstance(size, int) else tuple(size)
            work = list(torch.randn(8, 3, h, w, generator=torch.Generator().manual_seed(0)))

        def by(runner: Any, enc: Any = enc, work: list = work) -> Callable[[], Any]:
            def run() -> None:
                enc.runner = runner
                enc.encode(work)
            return run

        # ViT-B-32's batch of fp32 images takes ~0.4 s a call: one round spends the budget (a text query, 3 rounds)
        seconds = race({"onnx": by(runners[modality]), "torch": by(None)}, repeats=3, budget_s=2.0)
        choice = remember(cache_root() / "backends.json", _backend_key(tower, space, modality), seconds)
        enc.runner = runners[modality] if choice == "onnx" else None
        space.backends[modality] = choice


def _image_transform(pre: dict[str, Any]):
    """open_clip's own inference transform for a final preprocessing config."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    known = set(PreprocessCfg.__dataclass_fields__)
    return image_transform_v2(PreprocessCfg(**{k: v for k, v in pre.items() if k in known}), is_train=False)


def _cast_towers(model: torch.nn.Module, precision: dict[str, str], device: torch.device) -> None:
    """Store the image and text towers' weights in their format (bf16/fp16 weights, not autocast: casting
    the weights on every call made autocast slower than fp32 on the image tower). fp16 on a CPU: see
    `fp16_on_cpu`."""
    import torch

    def cast(module: torch.nn.Module | torch.Tensor, fmt: str) -> Any:
        if fmt == "fp16" and device.type == "cpu":
            return fp16_on_cpu(module)
        return module.to(dtype_of(fmt))

    if precision["image"] in REDUCED:
        cast(model.visual, precision["image"])
    fmt = precision["text"]
    if fmt in REDUCED:
        if hasattr(model, "text") and isinstance(model.text, torch.nn.Module):  # CustomTextCLIP
            cast(model.text, fmt)
            return
        for name in ("token_embedding", "transformer", "ln_final"):
            cast(getattr(model, name), fmt)
        for name in ("positional_embedding", "text_projection", "attn_mask"):
            t = getattr(model, name, None)
            if isinstance(t, torch.nn.Parameter):
                t.data = cast(t.data, fmt)
            elif isinstance(t, torch.Tensor):
                setattr(model, name, cast(t, fmt))
            elif isinstance(t, torch.nn.Module):
                cast(t, fmt)


def fp16_on_cpu(module: torch.nn.Module | torch.Tensor) -> Any:
    """An fp16 tower on a CPU (an index built on a GPU, queried or updated without one): its weights rounded to
    fp16, computed in fp32. CPUs without AVX512-FP16 compute fp16 ~10x slower than bf16 (ViT-B-32 here: 3.9
    img/s against 40); the vectors differ from a GPU's fp16 ones by activation rounding alone (cosine >= 0.9999,
    `tests/test_cuda.py`), as a GPU's differ from another GPU's."""
    import torch

    if isinstance(module, torch.Tensor):
        return module.to(torch.float16).to(module.dtype) if module.is_floating_point() else module
    for t in [*module.parameters(), *module.buffers()]:
        if t.is_floating_point():
            t.data = t.data.to(torch.float16).to(t.dtype)
    return module


def _probe_dim(model: torch.nn.Module) -> int:
    import torch

    with torch.no_grad():
        import open_clip

        tok = open_clip.tokenize(["probe"])
        return int(model.encode_text(tok).shape[-1])

