"""A space's passport: what a one-off query needs of a space, without building it (issue #37).

Loading a space computes its identity from open_clip's configs and the weights (importing torch and open_clip:
~4 of a 6 s `mmr search`). When a space loads, it writes a passport under the project's cache
(``MMR_CACHE``/passports/FINGERPRINT.json): its fingerprint and spec; every file its identity was computed
from (the weights, a checkpoint folder's config, this package's modules that compute identities), each with
its size and modification time; open_clip's version (its model configs); and, per modality, the tower a
query can run without torch (the open_clip text and image towers' ONNX exports, with their tokenizer's and
preprocessing's configs; an audio tower's network export with its front end as data, made at the first audio
query that loaded the space).

A later process that finds the passport of its index's fingerprint, with the same spec and every file as it
was, would compute the same identity: it encodes the query from the passport instead (the same vectors to
float rounding: the export is checked against the torch tower when made). Anything else (no passport, a file
touched, another open_clip) and the space loads as always, checked against the index, and writes a new one.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

from ..index.segments import atomic_write
from .open_clip_catalog import open_clip_version
from .spec import SpaceSpec, canonical_json
from .cache import cache_root

log = logging.getLogger(__name__)

VERSION = 1
# This package's modules whose code decides a space's identity: an edited one voids every passport.
IDENTITY_CODE = ("runtime.py", "towers.py", "weights.py", "spec.py", "precision.py", "image_decode.py")


def passport_path(fingerprint: str) -> Path:
    return cache_root() / "passports" / f"{fingerprint}.json"


def stamp(path: str | os.PathLike) -> list[Any]:
    """[path, size, mtime_ns]: a file as it is now ([path, None, None] where it is not there)."""
    try:
        st = os.stat(path)
    except OSError:
        return [str(path), None, None]
    return [str(path), st.st_size, st.st_mtime_ns]


def _basis(spec: SpaceSpec, files: list[str]) -> dict[str, Any]:
    here = Path(__file__).parent
    return {"version": VERSION, "spec": canonical_json(spec.to_dict()), "open_clip": open_clip_version(),
            "files": [stamp(f) for f in sorted(set(files)) + [str(here / m) for m in IDENTITY_CODE]]}


def write(fingerprint: str, spec: SpaceSpec, files: list[str], modality: str, entry: dict[str, Any]) -> None:
    """Record that a query of `modality` can run from `entry` (a `QUERY_TOWERS` kind and its fields) in the
    space of `fingerprint`, whose identity came from `files`. Best effort: the passport is an optimisation."""
    path = passport_path(fingerprint)
    basis = _basis(spec, files)
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = {}
    towers = old.get("towers", {}) if {k: old.get(k) for k in basis} == basis else {}
    if towers.get(modality) == entry:
        return
    record = {**basis, "fingerprint": fingerprint, "towers": {**towers, modality: entry}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))
    except OSError as e:
        log.debug("passport %s not written: %s", path, e)


def _clip_text(entry: dict[str, Any]) -> Any:
    from ..encoders.bpe import for_text_config
    from ..encoders.exported_text import ExportedTextEncoder
    from ..encoders.ort_tower import ExportFiles, read_export

    tokenizer = for_text_config(entry["text_cfg"], entry["model_name"])
    runner = read_export(ExportFiles.in_folder(Path(entry["export"]), "text", entry["precision"]), "text")
    if tokenizer is None or runner is None:
        return None
    return ExportedTextEncoder(runner, tokenizer, int(entry["dim"]))


def _clip_image(entry: dict[str, Any]) -> Any:
    from ..encoders.exported_image import ExportedImageEncoder, clip_pixels
    from ..encoders.ort_tower import ExportFiles, read_export

    prepare = clip_pixels(entry["preprocess"])
    runner = read_export(ExportFiles.in_folder(Path(entry["export"]), "image", entry["precision"]), "image")
    if prepare is None or runner is None:
        return None
    return ExportedImageEncoder(runner, prepare, int(entry["dim"]), entry.get("draft_to"))


def _audio(entry: dict[str, Any]) -> Any:
    from ..encoders.audio_front import FrontEnd
    from ..encoders.exported_audio import ExportedAudioEncoder
    from ..encoders.ort_tower import ExportFiles, read_export

    runner = read_export(ExportFiles.in_folder(Path(entry["export"]), "audio", entry["precision"]), "audio")
    if runner is None:
        return None
    return ExportedAudioEncoder(runner, FrontEnd.load(entry["front"]), int(entry["dim"]), int(entry["sample_rate"]),
                                float(entry["window_s"]), float(entry["hop_s"]), int(entry["min_samples"]))


# kind -> a builder of the query encoder from its entry (None: the entry no longer leads to a tower).
QUERY_TOWERS: dict[str, Callable[[dict[str, Any]], Any]] = {"clip-text": _clip_text, "clip-image": _clip_image,
                                                            "audio-tower": _audio}


def why_not(record: dict[str, Any], fingerprint: str, spec: SpaceSpec) -> str | None:
    """Why a passport does not vouch for the space of `fingerprint` and `spec` (None: it does)."""
    if record.get("version") != VERSION or record.get("fingerprint") != fingerprint:
        return "another version or fingerprint"
    if record.get("spec") != canonical_json(spec.to_dict()):
        return "another spec"
    if record.get("open_clip") != open_clip_version():
        return "another open_clip"
    for f in record.get("files", []):
        if stamp(f[0]) != f:
            return f"{f[0]} changed"
    return None


def _entry(fingerprint: str, spec: SpaceSpec, modality: str) -> tuple[dict[str, Any] | None, str]:
    """The passport's entry for `modality` where the passport vouches for the space (else None), and why not."""
    path = passport_path(fingerprint)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, "no passport"
    why = why_not(record, fingerprint, spec)
    entry = record.get("towers", {}).get(modality)
    if why is None and not (isinstance(entry, dict) and entry.get("kind") in QUERY_TOWERS):
        why = f"no {modality} tower a query can run without torch"
    return (entry if why is None else None), why or ""


def ready(fingerprint: str, spec: SpaceSpec, modality: str) -> bool:
    """Whether a one-off `modality` query in this space can run from its passport (builds nothing)."""
    return _entry(fingerprint, spec, modality)[0] is not None


def query_encoder(fingerprint: str, spec: SpaceSpec, modality: str) -> Any:
    """The encoder of a `modality` query in the space of `fingerprint` from its passport, or None (load the
    space then)."""
    entry, why = _entry(fingerprint, spec, modality)
    if entry is None:
        log.debug("passport of %s: %s", fingerprint, why)
        return None
    try:
        return QUERY_TOWERS[entry["kind"]](entry)
    except Exception as e:  # a damaged or half-removed export: the space loads as always (and exports again)
        log.debug("passport of %s: its %s tower does not load (%s)", fingerprint, modality, e)
        return None
