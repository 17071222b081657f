"""Moving an index to another space (`Engine.migrate`, `mmr migrate`): the new space's index is built beside the
current one from the files on disk, while searches keep answering from the current one; then a switch.

1. **Estimate**: a sample spread over the collection (per file modality) is indexed first in the new space, its
   time per file measured on this machine, and the rest extrapolated per modality, with the disk the new index
   takes and this process's peak memory; `dry_run` stops there (the sample's work is kept for the real run).
2. **Build**: every file of the index, indexed into ``INDEX/migration/`` by the ordinary incremental indexer:
   a kill loses at most the last checkpoint, and the next run goes on from there.
3. **Switch**, under the index's writer lock: catch up with what changed meanwhile, carry the notes over
   (embedded again in the new space), then `switch.switch`: the current space's files go to
   ``INDEX/previous/<fingerprint>/`` (`back` switches to them again without encoding a file; `drop_old` deletes
   them) and the new ones take their place. Other processes follow the switch at their next query.

With a **bridge** (`bridge=True`) the switch comes first: after the sample, up to `BRIDGE_PAIRS` items per modality
are embedded in the new space, a map old -> new is fitted on them per modality (`bridge.py`), every other file is
written into the new index with its old vectors carried through the map (marked bridged: hits on them are
approximate), and the index switches then. The files are embedded for real afterwards, in place, like changed
files (a kill and `migrate` again, or any `mmr index` of them, goes on).
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from ..catalog import BRIDGED, MEMORY, ItemRecord
from ..errors import DiskFullError, UsageError
from ..options import ItemOptions
from ..process_memory import peak_bytes, reset_peak
from .. import switch
from ..space.registry import spec_of

if TYPE_CHECKING:
    from ..bridge import Bridge
    from ..space.spec import SpaceSpec
    from .facade import Engine

SAMPLE_PER_MODALITY = 8   # files per file modality indexed first to measure the new space's time per file
SAMPLE_SHARE = 0.02       # ... or this share of them, whichever is more
# Ridge: above the old space's own search at every sample size measured, from 100 pairs, and fitted in
# milliseconds; the residual MLP's few points more at 1,000+ pairs cost seconds (docs/migrate.md).
BRIDGE_KIND = "ridge"
BRIDGE_PAIRS = 1000       # items per item modality embedded in the new space before the bridge is fitted
MIN_BRIDGE_PAIRS = 20     # fewer: that modality's items wait for their real vectors (not searchable meanwhile)
FILL_FILES = 2000         # files carried through the bridge per checkpoint
KEPT_SETTINGS = (ItemOptions.META_KEY, "index_type", "memory_budget")  # catalog settings a new space keeps


@dataclass
class MigrationReport:
    to: str                               # the new space's name
    fingerprint: str
    files: int                            # the index's files (indexed and skipped), all of them wanted there
    gone: int = 0                         # no longer on disk: not carried over
    estimate_seconds: float | None = None  # the rest of the work, extrapolated from the sample (None: no sample)
    per_modality: dict[str, dict[str, float]] = field(default_factory=dict)  # files, seconds per file, seconds
    estimate_bytes: int | None = None     # the new space's index on disk, extrapolated from the sample
    estimate_peak_bytes: int | None = None  # this process's memory at its peak during the build (see _estimate)
    sampled: int = 0
    indexed: int = 0                      # files indexed in the new space by this run (the sample included)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # files the new space could not read
    memories: int = 0                     # notes carried over
    reused: dict[str, int] = field(default_factory=dict)  # item modality -> items carried over as they were (a tower
    #                                                       both spaces share: the same vectors would come out)
    bridge: dict[str, int] = field(default_factory=dict)  # item modality -> pairs its bridge was fitted on
    bridged: int = 0                      # files switched with bridged vectors, embedded for real afterwards
    bridge_check: dict[str, dict[str, float]] = field(default_factory=dict)  # modality -> `bridge.HeldOut`
    bridge_refused: str | None = None     # why a bridge asked for was not used (the new space was built beside)
    distributed: dict[str, Any] | None = None  # with `ray`: the Ray run's summary (nodes, shards, files)
    switched: bool = False
    previous: str | None = None           # where the old space's files are kept
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["skipped"] = [{"path": p, "why": w} for p, w in self.skipped]
        return out


class Migrator:
    """The migrations of one engine's index."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def target_path(self) -> Path:
        return self.engine.path / switch.MIGRATION_DIR

    # ----------------------------------------------------------------- migrate
    def migrate(self, to: str | SpaceSpec, *, dry_run: bool = False, progress: bool = False, bridge: bool = False,
                ray: Any = None) -> MigrationReport:
        eng = self.engine
        eng.writer.check_writable()
        spec = spec_of(to)
        t0 = time.monotonic()
        if self._switched_through_bridge(spec):
            report = MigrationReport(to=spec.name, fingerprint=eng.store.space_record()["fingerprint"],
                                     files=eng.store.catalog.bridged()["files"], switched=True)
            if not dry_run:
                with self._disk_full_said(report):
                    self._embed_bridged(report, progress, ray)
            report.seconds = time.monotonic() - t0
            return report
        fresh = not (self.target_path / "catalog.sqlite").is_file()
        target = self._open_target(spec)
        try:
            fp = target.store.space_record()["fingerprint"]
            try:
                if fp == eng.store.space_record()["fingerprint"]:
                    raise UsageError(f"the index is already in space {spec.name!r} (fingerprint {fp})")
                self._check_towers(target)
            except UsageError:
                if fresh:  # refused before any work: leave nothing behind
                    target.close()
                    target = None
                    shutil.rmtree(self.target_path, ignore_errors=True)
                raise
            by_modality = self._files()
            paths = [p for ps in by_modality.values() for p in ps]
            report = MigrationReport(to=spec.name, fingerprint=fp, files=len(paths))
            present = {m: [p for p in ps if os.path.exists(p)] for m, ps in by_modality.items()}
            report.gone = len(paths) - sum(map(len, present.values()))
            with self._disk_full_said(report):
                report.reused = self._carry_shared(target)
                self._estimate(target, present, report, dry_run)
                if dry_run:
                    report.seconds = time.monotonic() - t0
                    return report
                self._check_disk(target, report)
                bridges = self._fit_bridges(target, present, report) if bridge else None
                if bridges:
                    self._switch(target, report, bridges)
                    target = None
                    self._embed_bridged(report, progress, ray)
                else:
                    _count(report, target.index([p for ps in present.values() for p in ps], progress=progress,
                                                ray=ray))
                    self._switch(target, report)
                    target = None
            report.seconds = time.monotonic() - t0
            return report
        finally:
            if target is not None:
                target.close()

    def _open_target(self, spec: SpaceSpec) -> Engine:
        path, eng = self.target_path, self.engine
        Engine = type(eng)  # the facade's class, which imports this module
        if not (path / "catalog.sqlite").is_file():
            if path.exists():
                shutil.rmtree(path)  # a migration that failed before its index existed
            target = Engine(path, model=spec, device=eng.device, backend=eng.backend)
            # The index's own ways go along: how files are cut into items (OCR, pooled audio), its index type
            # and memory budget. Without them the new space would cut a collection another way than it was.
            kept = {k: eng.store.catalog.get_meta(k) for k in KEPT_SETTINGS}
            with target.store.catalog.transaction():
                for k, v in kept.items():
                    if v is not None:
                        target.store.catalog.set_meta(k, v)
            return target
        target = Engine(path, device=eng.device, backend=eng.backend)
        if target.spec.name != spec.name or target.spec.towers != spec.towers:
            name = target.spec.name
            target.close()
            raise UsageError(f"a migration to space {name!r} is under way in {path}: finish it (mmr migrate --to "
                             f"{name}) or give it up (mmr migrate --abandon)")
        return target

    def _check_towers(self, target: Engine) -> None:
        """A modality the index holds that the new space has no tower for would be lost: say so before any work."""
        from ..modalities import get_modality

        counts = self.engine.store.catalog.counts()["items"]
        missing = {m: n for m, n in counts.items() if n and get_modality(m).encoder(target.space) is None}
        if missing:
            what = ", ".join(f"{n} {m} item(s)" for m, n in sorted(missing.items()))
            raise UsageError(f"space {target.spec.name!r} has no tower for {', '.join(sorted(missing))}: the index "
                             f"holds {what} it could not carry over. Choose a space with those towers.")

    def _files(self) -> dict[str, list[str]]:
        """The index's files (indexed or skipped: the new space may read what the old could not), by modality."""
        out: dict[str, list[str]] = {}
        for row in self.engine.store.catalog.files().values():
            if row.modality != MEMORY:
                out.setdefault(row.modality, []).append(row.path)
        return {m: sorted(ps) for m, ps in sorted(out.items())}

    def _estimate(self, target: Engine, present: dict[str, list[str]], report: MigrationReport,
                  dry_run: bool = False) -> None:
        """Index a sample of each modality's files first and extrapolate the rest: per file, the slope between
        two timed parts of n and 2n files (every `index` call also pays a fixed cost, planning and checkpoints,
        that a sample of a few files would otherwise count per file), plus that fixed cost for each indexing
        call the rest makes: the build and the catch-up at the switch, and after a dry run the real run's own
        sample (three calls per modality)."""
        target.prepare()  # the towers load and open before the clock starts: they are not per file
        reset_peak()
        known = target.store.catalog.files()
        fixed: list[float] = []
        for m, paths in present.items():
            todo = [p for p in paths if p not in known]
            if not todo:
                continue
            n1 = max(SAMPLE_PER_MODALITY, int(len(todo) * SAMPLE_SHARE))
            take = min(len(todo), 1 + 3 * n1)
            step = len(todo) / take
            sample = [todo[int(i * step)] for i in range(take)]  # spread over the collection, not its first folder
            # The first file pays once for what every later one reuses (decoders' imports, compiled kernels).
            parts = [sample[:1], sample[1:1 + n1], sample[1 + n1:]] if take == 1 + 3 * n1 else [[], sample]
            times = []
            for part in parts:
                t = time.perf_counter()
                done = target.writer.index(part, refit=False) if part else None
                times.append(time.perf_counter() - t)
                if done is not None:
                    _count(report, done)
            if len(parts) == 3 and times[2] > times[1]:
                per_file = (times[2] - times[1]) / (len(parts[2]) - len(parts[1]))
                fixed.append(max(0.0, times[1] - per_file * len(parts[1])))
            else:  # too few files for two parts: all of the time counts per file (an overestimate)
                per_file = times[-1] / max(1, len(parts[-1]))
            report.sampled += take
            rest = len(todo) - take
            report.per_modality[m] = {"files": len(todo), "sampled": take, "seconds_per_file": round(per_file, 4),
                                      "seconds": round(per_file * rest, 1)}
        if report.per_modality:
            work = sum(v["seconds"] for v in report.per_modality.values())
            calls = 2 + (3 * len(report.per_modality) if dry_run else 0)
            per_call = float(np.median(fixed)) if fixed else 0.0
            report.estimate_seconds = round(work + per_call * calls, 1)
            items = max(1, sum(target.store.catalog.counts()["items"].values()))
            total = sum(self.engine.store.catalog.counts()["items"].values())
            used = sum(f.stat().st_size for f in target.path.iterdir() if f.is_file())
            report.estimate_bytes = int(used / items * total)
            # Both spaces' towers, the decoders and a batch in flight were all at work in the sample; what grows
            # beyond it is the new index's vectors, held as float32 (and an id) until a compressed type is chosen.
            report.estimate_peak_bytes = int(peak_bytes() + max(0, total - items) * (4 * target.dim + 16))

    def _switch(self, target: Engine, report: MigrationReport, bridges: dict[str, Bridge] | None = None) -> None:
        """Catch up (or, with `bridges`, carry every file not yet embedded through them), carry the notes, and
        switch, holding the index's writer lock throughout."""
        eng = self.engine
        with eng.writer.writing(wait=60.0):
            now = self._files()  # another process may have indexed or removed files meanwhile
            wanted = {p for ps in now.values() for p in ps if os.path.exists(p)}
            extra = [p for p in target.store.catalog.files() if p not in wanted and not p.startswith(f"{MEMORY}:")]
            if extra:
                target.remove(extra)
            if bridges is not None:
                report.bridged = self._fill(target, bridges, wanted)
            elif wanted:
                _count(report, target.index(sorted(wanted)))
            report.memories = sync_memories(eng, target)
            keep = eng.path / switch.PREVIOUS_DIR / eng.store.space_record()["fingerprint"]
            self._swap(target, keep)
        report.switched, report.previous = True, str(keep)

    def _swap(self, incoming: Engine, keep: Path) -> None:
        """The switch itself (the caller holds the lock): both catalogs closed, files moved, the engine reopened."""
        eng = self.engine
        incoming_path = incoming.path
        incoming.close()
        if keep.exists():
            shutil.rmtree(keep)  # an older copy of the same space
        eng.store.catalog.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        eng.store.catalog.close()
        switch.switch(eng.path, incoming_path, keep)
        eng._reopen()

    def _check_disk(self, target: Engine, report: MigrationReport) -> None:
        """Refuse before the build when the new index, as estimated, would not fit on the disk."""
        if report.estimate_bytes is None:
            return
        written = sum(f.stat().st_size for f in target.path.rglob("*") if f.is_file())
        need, free = report.estimate_bytes - written, shutil.disk_usage(self.engine.path).free
        if need > free:
            kept = sum(p["bytes"] for p in self.previous())
            more = f" (`mmr migrate --drop-old` frees {kept / 1e6:,.0f} MB of spaces kept from before)" if kept else ""
            raise DiskFullError(f"the index in space {report.to!r} needs about {need / 1e6:,.0f} MB more on the disk "
                                f"of {self.engine.path}, which has {free / 1e6:,.0f} MB free: free some{more} and "
                                f"run the migration again (its sample is kept)")

    @contextmanager
    def _disk_full_said(self, report: MigrationReport) -> Iterator[None]:
        """A disk filling up becomes a `DiskFullError` saying where things stand and how to go on."""
        try:
            yield
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            name = report.to
            if report.switched:
                raise DiskFullError(
                    f"the disk filled up while embedding the files the switch to {name!r} carried through the "
                    f"bridge: the index is in {name!r} and answers (those files approximately); free some space and "
                    f"run `mmr migrate --to {name}` to go on") from e
            raise DiskFullError(
                f"the disk filled up while building the index in space {name!r} beside the current one: the current "
                f"space is untouched and answers searches; free some space and run `mmr migrate --to {name}` to go "
                f"on from the last checkpoint, or `mmr migrate --abandon` to delete what was built") from e

    # ----------------------------------------------------------------- the bridge
    def _switched_through_bridge(self, spec: SpaceSpec) -> bool:
        """Is the index already in `spec`'s space, switched through a bridge, with files still to embed?"""
        eng = self.engine
        return (eng.spec.name == spec.name and eng.spec.towers == spec.towers
                and eng.store.catalog.bridged()["files"] > 0)

    def _fit_bridges(self, target: Engine, present: dict[str, list[str]], report: MigrationReport
                     ) -> dict[str, Bridge] | None:
        """Embed more of a spread sample in the new space, until each item modality has `BRIDGE_PAIRS` items in
        both spaces (or every file is in), and fit a bridge per item modality on them. None (and the reason in
        the report): a bridge that would search worse than the old space on pairs left out of its fit, or too
        few pairs; the migration then builds beside, as without a bridge."""
        from .. import bridge as bridging

        for m, paths in present.items():
            known = target.store.catalog.files()
            todo = [p for p in paths if p not in known]
            have = self._pairs(target, {p for p in paths if p in known})
            short = max((BRIDGE_PAIRS - len(v[0]) for v in have.values()), default=BRIDGE_PAIRS)
            if short <= 0 or not todo:
                continue
            per_file = max(1.0, sum(len(v[0]) for v in have.values()) / max(1, sum(p in known for p in paths)))
            take = min(len(todo), int(short / per_file) + 1)
            step = len(todo) / take
            _count(report, target.writer.index([todo[int(i * step)] for i in range(take)], refit=False))
        out: dict[str, Bridge] = {}
        for m, (old, new) in self._pairs(target, None).items():
            if len(old) < MIN_BRIDGE_PAIRS:
                continue
            check = bridging.held_out(BRIDGE_KIND, old, new)
            report.bridge_check[m] = asdict(check)
            if not check.holds_up:
                report.bridge_refused = (f"on {check.pairs} {m} item(s) left out of its fit, the bridge finds "
                                         f"{check.bridged:.2f} of their new neighbours, the old space {check.old:.2f}: "
                                         f"searches would be worse than staying, so the new space is built beside")
                return None
            out[m] = bridging.fit(BRIDGE_KIND, old, new)
            report.bridge[m] = len(old)
        if not out:
            report.bridge_refused = (f"fewer than {MIN_BRIDGE_PAIRS} items of any modality are embedded in both "
                                     f"spaces to fit a bridge on, so the new space is built beside")
            return None
        return out

    def _pairs(self, target: Engine, paths: set[str] | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Item modality -> (old vectors, new vectors) of the items embedded in both spaces (the same file, hash
        and locator), of `paths` only if given."""
        old_cat, new_cat = self.engine.store.catalog, target.store.catalog
        old_rows = old_cat.files()
        ids: dict[str, tuple[list[int], list[int]]] = {}
        for path, row in new_cat.files().items():
            was = old_rows.get(path)
            if (paths is not None and path not in paths) or row.bridged or row.status != "indexed" or was is None \
                    or was.hash != row.hash or was.status != "indexed" or was.bridged:
                continue
            before = {(i.modality, json.dumps(i.locator, sort_keys=True)): i.id for i in old_cat.items_of_file(was.id)}
            for i in new_cat.items_of_file(row.id):
                j = before.get((i.modality, json.dumps(i.locator, sort_keys=True)))
                if j is not None:
                    ids.setdefault(i.modality, ([], []))[0].append(j)
                    ids[i.modality][1].append(i.id)
        out = {}
        for m, (a, b) in ids.items():
            out[m] = (_rows(self.engine.store.vectors, a), _rows(target.store.vectors, b))
        return out

    def _fill(self, target: Engine, bridges: dict[str, Bridge], wanted: set[str]) -> int:
        """Write every wanted file the new index lacks into it, its items' old vectors carried through the bridge
        of their modality (items of a modality without one are left to the real embedding), marked bridged."""
        mark = BRIDGED + self.engine.store.space_record()["fingerprint"]
        return self._carry(target, {m: b.apply for m, b in bridges.items()}, wanted, mark, whole=False)

    def _carry_shared(self, target: Engine) -> dict[str, int]:
        """Files whose every item is of a modality both spaces encode with the same tower (`_shared`) are written
        into the new index with the vectors they have: those would come out the same. Returns modality -> items
        carried."""
        shared = self._shared(target)
        if not shared:
            return {}
        wanted = {p for ps in self._files().values() for p in ps if os.path.exists(p)}
        before = target.store.catalog.counts()["items"]
        self._carry(target, {m: _same for m in shared}, wanted, target.store.space_record()["fingerprint"],
                    whole=True)
        after = target.store.catalog.counts()["items"]
        return {m: after.get(m, 0) - before.get(m, 0) for m in sorted(shared) if after.get(m, 0) > before.get(m, 0)}

    def _shared(self, target: Engine) -> set[str]:
        """The item modalities whose tower is the same in both spaces: the same identity (weights, configuration,
        input preparation) in the same precision. The old space's weights are read, no model is built."""
        from ..errors import MMRError
        from ..space.precision import named_precisions
        from ..space.runtime import tower_identities
        from ..space.spec import fingerprint_of

        eng = self.engine
        old_rec, new_rec = eng.store.space_record(), target.store.space_record()
        if old_rec["dim"] != new_rec["dim"] or old_rec.get("metric") != new_rec.get("metric"):
            return set()
        try:
            old_towers = {n: fingerprint_of(p) for n, p in tower_identities(eng.spec).items()}
            old_precision = named_precisions(old_rec.get("precision") or "fp32")
        except (MMRError, OSError):
            return set()  # the old space's weights are gone or unreadable: nothing to compare with
        new_towers, new_precision = target.space.tower_fingerprints, target.space.precision
        new_owner = {m: t.name for t in target.spec.towers for m in t.modalities}
        out = set()
        for t in eng.spec.towers:
            for m in t.modalities:
                other = new_owner.get(m)
                if other is not None and old_towers.get(t.name) == new_towers.get(other) and \
                        old_precision.get(m, "fp32") == new_precision.get(m, "fp32"):
                    out.add(m)
        return out

    def _carry(self, target: Engine, maps: dict[str, Any], wanted: set[str], mark: str, *, whole: bool) -> int:
        """Write the wanted files the new index lacks into it with their items' old vectors through `maps` (item
        modality -> a function of old vectors), `mark` as their space. `whole`: only files whose every item has a
        map; else a file's other items are left out (until it is embedded). Returns the files written."""
        src = self.engine.store.catalog
        have = target.store.catalog.files()
        rows = [r for p, r in sorted(src.files().items()) if p in wanted and p not in have]
        store = target.store
        written = 0
        with target.writer.writing():
            for start in range(0, len(rows), FILL_FILES):
                store.begin()
                chunk = rows[start:start + FILL_FILES]
                items = {r.id: src.items_of_file(r.id) if r.status == "indexed" else [] for r in chunk}
                if whole:  # (a file a bridge carried here is not embedded in this space yet: not a real vector)
                    chunk = [r for r in chunk if r.status == "indexed" and not r.bridged and items[r.id]
                             and all(i.modality in maps for i in items[r.id])]
                items = {r.id: [i for i in items[r.id] if i.modality in maps] for r in chunk}
                flat = [i for r in chunk for i in items[r.id]]
                vecs = _rows(self.engine.store.vectors, [i.id for i in flat])
                carried = np.empty((len(flat), target.dim), np.float32)
                mods = np.array([i.modality for i in flat])
                for m, f in maps.items():
                    sel = mods == m
                    if sel.any():
                        carried[sel] = f(vecs[sel])
                pos = 0
                for r in chunk:
                    its = items[r.id]
                    date, source, tags = src.db.execute("SELECT date, date_source, tags FROM files WHERE id=?",
                                                        (r.id,)).fetchone()
                    fid = store.catalog.upsert_file(r.path, r.modality, r.size, r.mtime_ns, r.hash, r.status,
                                                    r.error if r.status != "indexed" else None, mark, date=date,
                                                    date_source=source, tags=tags.split("\n") if tags else ())
                    ids = store.catalog.add_items(fid, r.modality, [ItemRecord(i.locator, i.text, i.modality)
                                                                   for i in its])
                    if ids.size:
                        store.vectors.add(ids, carried[pos:pos + len(its)])
                    pos += len(its)
                written += len(chunk)
                store.checkpoint()
        return written

    def _embed_bridged(self, report: MigrationReport, progress: bool, ray: Any) -> None:
        """Embed for real the files the switch carried through a bridge (in place: they are planned as changed)."""
        eng = self.engine
        paths = eng.store.catalog.bridged()["paths"]
        gone = [p for p in paths if not os.path.exists(p)]
        if gone:
            eng.remove(gone)
        here = [p for p in paths if os.path.exists(p)]
        if here:
            _count(report, eng.index(here, progress=progress, ray=ray))

    # ----------------------------------------------------------------- back, drop, abandon
    def previous(self) -> list[dict[str, Any]]:
        """The spaces switched away from, newest first: fingerprint, name, folder, size."""
        out = []
        base = self.engine.path / switch.PREVIOUS_DIR
        for folder in sorted(base.iterdir(), key=lambda p: -p.stat().st_mtime) if base.is_dir() else []:
            try:
                rec = json.loads((folder / "space.json").read_text())
            except (OSError, ValueError):
                continue
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            out.append({"fingerprint": folder.name, "space": rec["spec"]["name"], "path": str(folder), "bytes": size})
        return out

    def back(self, fingerprint: str | None = None) -> dict[str, Any]:
        """Switch to a space switched away from (the newest, or the one of `fingerprint`) without encoding a file;
        notes made since are carried over. The current space is kept in its place under previous/."""
        eng = self.engine
        Engine = type(eng)  # the facade's class, which imports this module
        eng.writer.check_writable()
        choices = self.previous()
        chosen = next((p for p in choices if fingerprint in (None, p["fingerprint"])), None)
        if chosen is None:
            raise UsageError("no earlier space is kept here" if not choices else
                             f"no earlier space {fingerprint}; kept: {', '.join(p['fingerprint'] for p in choices)}")
        with eng.writer.writing(wait=60.0):
            old = Engine(chosen["path"], device=eng.device, backend=eng.backend)
            carried = sync_memories(eng, old)
            keep = eng.path / switch.PREVIOUS_DIR / eng.store.space_record()["fingerprint"]
            self._swap(old, keep)
        return {"space": chosen["space"], "fingerprint": chosen["fingerprint"], "memories": carried,
                "previous": str(keep)}

    def drop_old(self) -> int:
        """Delete the spaces switched away from; returns the bytes freed."""
        base = self.engine.path / switch.PREVIOUS_DIR
        freed = sum(p["bytes"] for p in self.previous())
        shutil.rmtree(base, ignore_errors=True)
        return freed

    def abandon(self) -> bool:
        """Give up a migration under way (its partial index is deleted)."""
        if not self.target_path.exists():
            return False
        shutil.rmtree(self.target_path)
        return True

    def status(self) -> dict[str, Any] | None:
        """A migration under way: the space, files done of all (None: none); after a switch through a bridge,
        also the files and items still answered approximately."""
        bridged = self.engine.store.catalog.bridged()
        if bridged["files"]:
            rec = self.engine.store.space_record()
            total = sum(1 for r in self.engine.store.catalog.files().values() if r.modality != MEMORY)
            return {"to": rec["spec"]["name"], "fingerprint": rec["fingerprint"],
                    "files_done": total - bridged["files"], "files": total,
                    "bridged": {"files": bridged["files"], "items": bridged["items"]}}
        try:
            rec = json.loads((self.target_path / "space.json").read_text())
        except (OSError, ValueError):
            return None
        from ..catalog import Catalog

        cat = Catalog(self.target_path / "catalog.sqlite", readonly=True)
        try:
            done = cat.counts()
        finally:
            cat.close()
        total = sum(1 for r in self.engine.store.catalog.files().values() if r.modality != MEMORY)
        return {"to": rec["spec"]["name"], "fingerprint": rec["fingerprint"],
                "files_done": done["files_indexed"] + done["files_skipped"], "files": total}


def _count(report: MigrationReport, done: Any) -> None:
    report.indexed += done.files_new + done.files_changed + done.files_moved + done.files_copied
    report.skipped += done.skipped
    if getattr(done, "distributed", None):
        report.distributed = done.distributed


def _same(vecs: np.ndarray) -> np.ndarray:
    return vecs


def _rows(vectors: Any, ids: list[int]) -> np.ndarray:
    """The stored vectors of `ids`, in that order, as float32 unit rows."""
    if not ids:
        return np.empty((0, vectors.dim), np.float32)
    return np.concatenate([v for _, v in vectors.iter_vectors(np.asarray(ids, np.int64))])


def sync_memories(src: Engine, dst: Engine) -> int:
    """Make `dst`'s notes `src`'s (each embedded again in `dst`'s space): notes are matched by scope and creation
    time; changed ones are replaced, missing ones added, ones `src` no longer has forgotten. Returns the notes
    written."""
    mine = {_key(m): m for m in src.memories()}
    theirs = {_key(m): m for m in dst.memories()}
    stale = [m.id for k, m in theirs.items() if k not in mine or (m.text, m.metadata, m.updated) !=
             (mine[k].text, mine[k].metadata, mine[k].updated)]
    if stale:
        import numpy as np

        with dst.writer.writing():
            dst.store.begin()
            gone = [dst.store.catalog.delete_memory(i) for i in stale]
            dst.store.vectors.remove(np.concatenate(gone))
            dst.store.checkpoint()
    kept = {k for k, m in theirs.items() if m.id not in stale}
    todo = [m for k, m in mine.items() if k not in kept]
    if todo:
        rows = []
        for m in todo:
            items, vecs = dst.memory._embed(m.text)
            rows.append({"text": m.text, "user": m.scope.user, "agent": m.scope.agent, "session": m.scope.session,
                         "metadata": m.metadata, "created": m.created, "updated": m.updated, "items": items,
                         "vectors": vecs})
        dst.memory.add_embedded(rows)
    return len(todo)


def _key(m: Any) -> tuple:
    return (m.scope.user, m.scope.agent, m.scope.session, m.created)
