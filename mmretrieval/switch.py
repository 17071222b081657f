"""Switching an index folder from one space's files to another's (a migration, and back), so that a kill at any
moment leaves one whole index in place.

An index folder holds one space's files at its top (catalog, vectors, space.json, thumbnails). A migration
builds the new space's index in a subfolder; the switch moves the current files to `previous/<fingerprint>/`
and the subfolder's up. It is written down first (`switch.json`: which files go out, which come in, and the
phase), then done; whoever opens the folder next and finds the journal finishes it (the moves are idempotent),
so the folder never stays half switched. The phase is rewritten after every file has gone out, so that coming
in never takes a file that just came in for one to go out.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from .errors import IndexLockedError

JOURNAL = "switch.json"
MIGRATION_DIR = "migration"   # the space being built, beside the current one
PREVIOUS_DIR = "previous"     # spaces switched away from, one folder per fingerprint
_OWN = ("catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm", "space.json", "thumbnails", "staging")


def index_files(folder: Path) -> list[str]:
    """The names of an index's own files in `folder` (not the lock, not migrations or previous spaces)."""
    if not folder.is_dir():
        return []
    return sorted(n for n in os.listdir(folder) if n in _OWN or n.startswith("vectors."))


def _write(root: Path, plan: dict) -> None:
    from .index.segments import atomic_write

    atomic_write(root / JOURNAL, lambda tmp: Path(tmp).write_text(json.dumps(plan)))


def switch(root: Path, incoming: Path, keep: Path) -> None:
    """Put the index in `incoming` (a folder below `root`) in `root`'s place, keeping the current one in `keep`
    (below `root`). The caller holds `root`'s writer lock and has closed its catalog."""
    plan = {"incoming": str(incoming.relative_to(root)), "keep": str(keep.relative_to(root)),
            "out": index_files(root), "in": index_files(incoming), "phase": "out"}
    _write(root, plan)
    finish(root)


def finish(root: Path) -> bool:
    """Finish a switch written down in `root` (True if there was one)."""
    try:
        plan = json.loads((root / JOURNAL).read_text())
    except FileNotFoundError:
        return False
    incoming, keep = root / plan["incoming"], root / plan["keep"]
    if plan["phase"] == "out":
        keep.mkdir(parents=True, exist_ok=True)
        for name in plan["out"]:
            if (root / name).exists() and not (keep / name).exists():
                os.replace(root / name, keep / name)
        plan["phase"] = "in"
        _write(root, plan)
    for name in plan["in"]:
        if (incoming / name).exists():
            if (root / name).is_dir():  # a folder the outgoing index did not have (thumbnails) made meanwhile
                shutil.rmtree(root / name)
            os.replace(incoming / name, root / name)
    if incoming.is_dir() and not any(n for n in os.listdir(incoming) if n != ".lock"):
        shutil.rmtree(incoming, ignore_errors=True)
    (root / JOURNAL).unlink()
    return True


def wait_or_finish(root: Path, is_locked, wait: float = 10.0) -> None:  # noqa: ANN001
    """Before opening `root`: if a switch is under way, wait for the process doing it (it holds the writer's
    lock); if that process died, finish the switch here."""
    deadline = time.monotonic() + wait
    while (root / JOURNAL).exists():
        if not is_locked():
            finish(root)
            return
        if time.monotonic() > deadline:
            raise IndexLockedError(f"{root} is being switched to another space by another process; try again")
        time.sleep(0.05)
