"""An agent's memory in the index's own space: notes that are not files.

A memory is a short text an agent (or a person, `mmr notes add`) keeps: stored as a row of the catalog's
`memories` table (its text, scope, metadata and times: the source of truth) and embedded by the space's text
tower as passages, like a document's, so that `recall` finds it by meaning. Its items belong to a catalog file
row named ``memory:<id>`` of the file modality `catalog.MEMORY`; ordinary searches and collection views leave
them out, and folder indexing never sweeps them (they lie under no folder).

Scopes keep agents apart: a memory carries a user, an agent and a session (each may be empty). A recall, list
or forget that names a field sees only memories with exactly that value there; a field it leaves out
(None) is not restricted. mem0 shipped both kinds of leak this rules out (a search of one user returning
another's memories, a delete in one scope reaching another): see tests/test_memory.py.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from .errors import UsageError

MAX_CHARS = 20_000      # a note, not a document: longer texts belong in a file (`mmr index`)
# A new memory whose nearest memory in its scope has at least this cosine restates it: that memory is updated
# instead of a copy added. On the shipped tiny space, 144 generated notes (48 facts, 3 wordings each) scored
# 0.84-0.99 between wordings of one fact (median 0.94) and at most 0.85 between different facts, so 0.95 merges
# about half of the restatements and no two different facts (tests/test_memory.py: 19 of 20 restatements merged,
# none into another note). Exact restatements (the same words, whatever the case, spacing and punctuation) merge
# in every space. `merge_above` changes it per call.
MERGE_COSINE = 0.95
HALF_LIFE_DAYS = 7.0    # recency weighting: a memory this old counts half as recent as a new one
SCOPE_FIELDS = ("user", "agent", "session")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@:+-]{0,127}")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Scope:
    """Whose memory: each field a name, or "" (none) when stored; None in a filter means any."""

    user: str | None = None
    agent: str | None = None
    session: str | None = None

    def stored(self) -> Scope:
        return Scope(*(v or "" for v in self.values()))

    def values(self) -> tuple[str | None, ...]:
        return (self.user, self.agent, self.session)

    def given(self) -> dict[str, str]:
        """The restricted fields: {name: value}."""
        return {f: v for f, v in zip(SCOPE_FIELDS, self.values()) if v is not None}

    def to_dict(self) -> dict[str, str | None]:
        return dict(zip(SCOPE_FIELDS, self.values()))


def make_scope(user: str | None = None, agent: str | None = None, session: str | None = None) -> Scope:
    """A scope from what a caller typed: names of letters, digits and ``_ . @ : + -`` (an e-mail address, a
    UUID, ``team:alice``), or "" for "none"."""
    for name, v in (("user", user), ("agent", agent), ("session", session)):
        if v is None or v == "":
            continue
        if not isinstance(v, str) or not _NAME.fullmatch(v):
            raise UsageError(f"{name} must be a name of letters, digits and _ . @ : + - (up to 128 characters, "
                             f"starting with a letter or digit), got {v!r}")
    return Scope(user, agent, session)


def check_text(text: Any) -> str:
    if not isinstance(text, str):
        raise UsageError(f"a memory is text, got {type(text).__name__}")
    if not text.strip():
        raise UsageError("the memory is empty; give the text to remember")
    if len(text) > MAX_CHARS:
        raise UsageError(f"a memory holds at most {MAX_CHARS:,} characters (this one has {len(text):,}); "
                         f"keep longer texts as files and index them (mmr index)")
    return text.strip()


def check_metadata(metadata: Any) -> dict[str, Any]:
    """Flat key -> string, number or boolean (what a filter can match)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise UsageError(f"memory metadata must be a mapping of names to values, got {type(metadata).__name__}")
    for k, v in metadata.items():
        if not isinstance(k, str) or not _KEY.fullmatch(k):
            raise UsageError(f"metadata names are letters, digits, _ . - (starting with a letter or _), got {k!r}")
        if not (v is None or isinstance(v, (str, int, float, bool))) or isinstance(v, float) and not math.isfinite(v):
            raise UsageError(f"metadata {k!r}: values are strings, numbers or booleans, got {type(v).__name__}")
    return dict(metadata)


def same_words(a: str, b: str) -> bool:
    """The same words in the same order, whatever their case, spacing and punctuation."""
    return re.findall(r"\w+", a.lower()) == re.findall(r"\w+", b.lower())


def recency(age_seconds: float, half_life_days: float = HALF_LIFE_DAYS) -> float:
    """1 for a memory made now, 0.5 after a half-life, towards 0 after that."""
    return 0.5 ** (max(0.0, age_seconds) / (half_life_days * 86400.0))


def recall_score(cosine: float, age_seconds: float, weight: float, half_life_days: float = HALF_LIFE_DAYS) -> float:
    """A recalled memory's rank score: its cosine, discounted by age with `weight` (0: meaning only; 1: an
    older memory counts its cosine times its recency)."""
    return cosine * (1.0 - weight + weight * recency(age_seconds, half_life_days))


def check_weight(weight: Any) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
        raise UsageError(f"recency weight must be a number from 0 to 1, got {weight!r}")
    return float(weight)


@dataclass(frozen=True)
class Memory:
    """A stored memory, as `memories`, `recall` and the tools give it."""

    id: int
    text: str
    scope: Scope
    metadata: dict[str, Any]
    created: float   # seconds since the epoch
    updated: float
    embedded: bool = True   # False: waiting to be embedded again (its vectors were lost; the next write does it)
    score: float | None = None       # recall: the rank score (cosine, discounted by age with a recency weight)
    cosine: float | None = None      # recall: the best passage's cosine with the query
    relevance: float | None = None   # recall: as a search hit's (None: too few text items to tell)

    def to_dict(self) -> dict[str, Any]:
        from datetime import datetime, timezone

        def iso(t: float) -> str:
            return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

        out: dict[str, Any] = {"id": self.id, "text": self.text, **self.scope.to_dict(), "metadata": self.metadata,
                               "created": iso(self.created), "updated": iso(self.updated)}
        if not self.embedded:
            out["embedded"] = False
        for k in ("score", "cosine", "relevance"):
            v = getattr(self, k)
            if v is not None:
                out[k] = round(v, 4)
        return out


@dataclass
class Remembered:
    """What `remember` did: added a memory, or updated the one the text restates (with the text it replaced)."""

    memory: Memory
    action: str                      # "added" or "updated"
    replaced: str | None = None      # the earlier text of an updated memory
    cosine: float | None = None      # how close the new text was to it

    def to_dict(self) -> dict[str, Any]:
        out = {"action": self.action, "memory": self.memory.to_dict()}
        if self.replaced is not None:
            out["replaced"] = self.replaced
            out["cosine"] = None if self.cosine is None else round(self.cosine, 4)
        return out
