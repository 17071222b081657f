"""Indexing, part 1 of 3: plan. Walk the roots and compare every file with the catalog (mark and sweep).

The result is plain data: what to embed (new or changed files), what is unchanged, what vanished (to be
swept, or moved), and which contents the index already holds vectors for (so that moves and copies are
hashed, not embedded again). Nothing here decodes or writes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from ..catalog import Catalog, FileRow
from .walk import FileEntry, Ignored, WalkError, normalise_roots, walk


@dataclass
class Plan:
    roots: list[str]
    todo: list[FileEntry] = field(default_factory=list)                 # new or changed: to embed
    unchanged: int = 0
    still_skipped: list[tuple[str, str]] = field(default_factory=list)  # unchanged files skipped before
    walk_errors: list[tuple[str, str]] = field(default_factory=list)    # unreadable now (kept in the catalog)
    ignored: list[str] = field(default_factory=list)                    # files of no registered modality
    known: dict[str, FileRow] = field(default_factory=dict)             # catalog rows under the roots
    gone: dict[str, FileRow] = field(default_factory=dict)              # known, not seen: swept unless moved
    gone_by_hash: dict[str, FileRow] = field(default_factory=dict)      # vanished contents (moves)
    present_by_hash: Mapping[str, FileRow] = field(default_factory=dict)  # contents still present (copies)

    @property
    def reusable(self) -> dict[str, tuple[str, str | None]]:
        """Content hash -> (modality, path of the present copy or None): what the embed step may skip."""
        out: dict[str, tuple[str, str | None]] = {h: (r.modality, r.path) for h, r in self.present_by_hash.items()}
        out.update({h: (r.modality, None) for h, r in self.gone_by_hash.items()})
        return out


def make_plan(catalog: Catalog, roots: list[str]) -> Plan:
    roots = normalise_roots(roots)
    plan = Plan(roots=roots, known=catalog.files(under=roots))
    seen: set[str] = set()
    for x in walk(roots):
        if isinstance(x, Ignored):
            plan.ignored.append(x.path)
            continue
        seen.add(x.path)
        if isinstance(x, WalkError):
            plan.walk_errors.append((x.path, x.reason))  # unreadable now is not deleted: keep what we had
            continue
        row = plan.known.get(x.path)
        if row is not None and row.size == x.size and row.mtime_ns == x.mtime_ns and row.modality == x.modality \
                and not row.bridged:  # a bridged file's vectors are approximate: embedded again, here
            plan.unchanged += 1
            if row.status == "skipped":
                plan.still_skipped.append((row.path, row.error or ""))
            continue
        plan.todo.append(x)
    plan.gone = {p: r for p, r in plan.known.items() if p not in seen}
    plan.gone_by_hash = {r.hash: r for r in plan.gone.values() if r.status == "indexed" and r.hash and not r.bridged}
    plan.present_by_hash = {r.hash: r for r in catalog.files().values()
                            if r.status == "indexed" and r.hash and r.path not in plan.gone and not r.bridged}
    return plan
