"""The loaded space: every tower of a `SpaceSpec` built with its real weights, one encoder per modality."""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any, Callable

import torch

from ..errors import SpaceError, UnsupportedModalityError, UnsupportedPrecisionError, UsageError
from .backend import parse_backend
from .precision import named_precisions, parse_precision, reduced
from .spec import SpaceSpec, fingerprint_of
from .image_decode import JPEG_DRAFT, check_jpeg_draft
from .towers import tower_family

log = logging.getLogger(__name__)

FINGERPRINT_VERSION = 1


def check_families(spec: SpaceSpec, precision: dict[str, str]) -> None:
    """Every tower's family is registered, encodes what the tower is declared for, and runs in its format."""
    for t in spec.towers:
        family = tower_family(t.family)
        if family.modalities and not set(t.modalities) <= set(family.modalities):
            raise SpaceError(f"space {spec.name!r}: tower {t.name!r} is declared for {', '.join(t.modalities)}, but "
                             f"the {family.name} family encodes {', '.join(family.modalities)}")
        for m in t.modalities:
            p = precision.get(m, "fp32")
            if p not in family.precisions:
                raise UnsupportedPrecisionError(
                    f"space {spec.name!r}: the {family.name} tower {t.name!r} runs in "
                    f"{', '.join(family.precisions)}, not {p} ({m})")


def fit_to_families(spec: SpaceSpec, request: str | dict[str, str] | None,
                    parsed: dict[str, str]) -> dict[str, str]:
    """`auto`'s choice for each modality, where the tower's family cannot run it, becomes fp32; a format asked for
    by name stays (and `check_families` refuses it)."""
    named = named_precisions(request)
    out = dict(parsed)
    for t in spec.towers:
        family = tower_family(t.family)
        for m in t.modalities:
            if m not in named and out.get(m, "fp32") not in family.precisions:
                out[m] = "fp32"
    return out


class _Pending:
    """What identity() needs of a space before it is built (the spec; resolved weights are cached on it)."""

    def __init__(self, spec: SpaceSpec, jpeg_draft: int = JPEG_DRAFT) -> None:
        self.spec = spec
        self.jpeg_draft = jpeg_draft


def tower_identities(spec: SpaceSpec, holder: Any = None) -> dict[str, dict[str, Any]]:
    """Each tower's part of the identity, by tower name (needs the weights; no model is built)."""
    holder = holder if holder is not None else _Pending(spec)
    return {t.name: tower_family(t.family).identity(t, holder) for t in spec.towers}


def space_identity(spec: SpaceSpec, resolved: Any = None, precision: dict[str, str] | None = None,
                   *, towers: dict[str, dict[str, Any]] | None = None, jpeg_draft: int = JPEG_DRAFT) -> dict[str, Any]:
    """Everything that decides where vectors land; its hash is the fingerprint. Needs the weights.

    Each tower's family contributes its part (`towers`, from `tower_identities`, or computed here).
    `precision` (tower -> fp32/bf16/int8) enters only for towers not in fp32, so the reference keeps the
    fingerprint it had before precision was recorded."""
    if towers is None:
        holder = _Pending(spec, check_jpeg_draft(jpeg_draft))
        if resolved is not None:
            holder.__dict__.setdefault("_resolved", {})["clip"] = resolved
        towers = tower_identities(spec, holder)
    ident: dict[str, Any] = {"version": FINGERPRINT_VERSION, "metric": spec.metric, "normalized": True, "audio": None}
    by_name = {t.name: t for t in spec.towers}
    placed: dict[str, str] = {}  # identity key -> the tower that set it
    for name, part in towers.items():
        family = tower_family(by_name[name].family)
        part = part if family.flat_identity else {f"tower:{name}": {"family": family.name, **part}}
        for key in part:
            if key in placed:
                raise SpaceError(f"space {spec.name!r}: towers {placed[key]!r} and {name!r} both describe "
                                 f"{key!r} in the space's identity")
            placed[key] = name
        ident.update(part)
    if spec.dim is not None and spec.clip is None:
        ident["dim"] = spec.dim
    low = reduced({t: p for t, p in (precision or {}).items() if t in spec.modalities})
    if low:
        ident["precision"] = low
    return ident


class Encoders(Mapping[str, Any]):
    """modality -> encoder of a space. The first tower loads with the space (it sets the space's dimension); the
    others at the first need of one of their modalities, so that a text query does not load an audio tower
    (with librosa's and scipy's imports: ~1.6 s of a one-off `mmr search`); iterating loads every tower (an
    index run, a server's warm-up: a tower that cannot load fails there, before any file is read). A tower
    in int8 loads with the space too: where int8 is refused, ``auto`` must know it then to choose again."""

    def __init__(self, space: Space, towers: tuple[Any, ...] | list[Any]) -> None:
        self._space = space
        self._loaded: dict[str, Any] = {}
        self._pending = list(towers)
        self._lock = threading.RLock()
        for i, tower in enumerate(list(self._pending)):
            if i == 0 or any(space.precision.get(m) == "int8" for m in tower.modalities):
                self._load(tower)

    def _load(self, tower: Any) -> None:
        with self._lock:
            if tower in self._pending:
                space = self._space
                encoders = tower_family(tower.family).load(tower, space)
                for modality, enc in encoders.items():
                    if modality not in tower.modalities:
                        raise SpaceError(f"space {space.spec.name!r}: tower {tower.name!r} gave a {modality} encoder, "
                                         f"but it is declared for {', '.join(tower.modalities)}")
                    dim = getattr(enc, "dim", space.dim)
                    if dim != space.dim:
                        raise SpaceError(f"space {space.spec.name!r}: tower {tower.name!r} encodes {modality} into "
                                         f"{dim} dimensions, the space has {space.dim}")
                self._loaded.update(encoders)
                self._pending.remove(tower)

    def _load_all(self) -> None:
        for tower in list(self._pending):
            self._load(tower)

    def __getitem__(self, modality: str) -> Any:
        if modality not in self._loaded:
            for tower in list(self._pending):
                if modality in tower.modalities:
                    self._load(tower)
        return self._loaded[modality]

    def __iter__(self) -> Iterator[str]:
        self._load_all()
        return iter(dict(self._loaded))

    def __len__(self) -> int:
        self._load_all()
        return len(self._loaded)

    @property
    def loaded(self) -> dict[str, Any]:
        """The encoders loaded so far (nothing more is loaded)."""
        return dict(self._loaded)


class Space:
    """A loaded shared space: one encoder per modality, all into the same L2-normalised space."""

    def __init__(self, spec: SpaceSpec, *, device: str = "cpu", num_threads: int | None = None,
                 precision: str | dict[str, str] = "fp32", inference: bool = True,
                 backend: str | None = None, jpeg_draft: int = JPEG_DRAFT) -> None:
        """`precision`: ``fp32`` (the reference, the default here), ``bf16``, ``fp16``, ``int8``, ``auto`` (by
        what the device does, see `space.precision`) or ``tower=format`` pairs; the index remembers its own.
        `inference=False` keeps the model trainable: no prepacked weights (see `encoders.packed`).
        `backend`: auto (the faster runtime per tower, measured once; see `space.backend`), torch or onnx;
        None reads ``MMR_BACKEND``. Which one runs each loaded tower is in `backends` (it does not move vectors).
        `jpeg_draft`: JPEGs decode to at least this many times the model's input size (see `towers`).
        `device`: cpu, cuda or cuda:N (`space.device`); int8 towers run under ONNX Runtime on the CPU whatever it is.
        Where ``auto`` chose int8 for a tower that cannot run it (a model ONNX export does not cover),
        the space is built with auto's other choice; an explicit int8 there is an error."""
        if num_threads:
            torch.set_num_threads(num_threads)
        self.spec = spec
        self.device = torch.device(device)
        self.inference = inference
        self.backend = parse_backend(backend if inference else "torch")  # training needs torch's modules
        self.jpeg_draft = check_jpeg_draft(jpeg_draft)
        self.precision = fit_to_families(spec, precision, parse_precision(precision, device))
        try:
            self._load()
        except UnsupportedPrecisionError:
            fallback = fit_to_families(spec, precision, parse_precision(precision, device, int8_faster=False))
            if fallback == self.precision:
                raise
            log.info("space %s: int8 is not available for its towers; using %s", spec.name, fallback)
            self.precision = fallback
            self._load()

    def _load(self) -> None:
        spec = self.spec
        self.backends: dict[str, str] = {}
        if spec.dim is not None:
            self.dim = spec.dim  # declared; an open_clip tower's config must agree (checked as it loads)
        check_families(spec, self.precision)
        towers = tower_identities(spec, self)  # resolves the weights once; the loads below reuse them
        self.identity = space_identity(spec, precision=self.precision, towers=towers)
        self.fingerprint = fingerprint_of(self.identity)
        # One fingerprint per tower: which towers two spaces share (their vectors for those modalities agree).
        self.tower_fingerprints = {name: fingerprint_of(part) for name, part in towers.items()}
        # Per item modality: its tower and that tower's precision. Two spaces that agree on a modality's make
        # the same vectors for it (the embedding cache serves them across spaces).
        self.modality_towers = {m: f"{self.tower_fingerprints[t.name]}/{self.precision.get(m, 'fp32')}"
                                for t in spec.towers for m in t.modalities}
        files = [tower_family(t.family).identity_files(t, self) for t in spec.towers]
        self.identity_files = None if any(f is None for f in files) else [x for f in files for x in f]
        self._query_tower_makers: dict[str, Callable[[], dict[str, Any] | None]] = {}
        self.encoders = Encoders(self, spec.towers)

    def note_query_tower(self, modality: str, entry: dict[str, Any]) -> None:
        """A tower of this space that a one-off `modality` query can run without loading the space: in the
        space's passport (`space.passport`), where its identity's files are known."""
        if self.identity_files is not None:
            from . import passport

            passport.write(self.fingerprint, self.spec, self.identity_files, modality, entry)

    def offer_query_tower(self, modality: str, make: Callable[[], dict[str, Any] | None]) -> None:
        """A tower whose one-off form costs work to make (an export only queries use): `make()` makes it and
        returns its passport entry (None: it cannot be made), at `make_query_tower`."""
        self._query_tower_makers[modality] = make

    def make_query_tower(self, modality: str) -> bool:
        """Make the one-off form of the `modality` tower offered (`offer_query_tower`) and note it in the passport;
        False where none was offered, it cannot be made, or the space has no passport. An optimisation: a failure
        is logged, never raised."""
        make = self._query_tower_makers.pop(modality, None)
        if make is None or self.identity_files is None:
            return False
        try:
            entry = make()
        except Exception as e:  # noqa: BLE001 - the query is answered by the loaded tower all the same
            log.warning("space %s: no one-off %s tower (%s)", self.spec.name, modality, e)
            return False
        if entry is not None:
            self.note_query_tower(modality, entry)
        return entry is not None

    @property
    def text(self) -> Any:
        return self.encoders.get("text")

    @property
    def image(self) -> Any:
        return self.encoders.get("image")

    @property
    def audio(self) -> Any:
        return self.encoders.get("audio")

    @property
    def model(self) -> torch.nn.Module:
        """The open_clip model (what training and evaluation reach for), built at its first use: a space whose
        towers run from cached ONNX Runtime exports does not build it for encoding."""
        clip = self.__dict__.get("clip_model")
        if clip is None:
            raise AttributeError(f"space {self.spec.name!r} has no open_clip model")
        return clip()

    @property
    def modalities(self) -> tuple[str, ...]:
        """The registered modalities this space has a tower for."""
        from ..modalities import modalities

        return tuple(m.name for m in modalities() if not m.container and m.encoder(self) is not None)

    def encoder(self, modality: str):
        from ..modalities import get_modality

        try:
            enc = get_modality(modality).encoder(self)
        except UsageError as e:
            raise SpaceError(str(e)) from None
        if enc is None:
            raise UnsupportedModalityError(f"space {self.spec.name!r} has no {modality} tower")
        return enc
