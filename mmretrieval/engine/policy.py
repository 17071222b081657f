"""How an index is kept: the vector index's type (a pure function of count, dimension and memory budget, or the
type the user pinned), and how its files are cut into items. Both are the index's own, recorded in its catalog."""
from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..options import ItemOptions

if TYPE_CHECKING:
    from .facade import Engine


class IndexPolicy:
    """One engine's index policy; called by the writer inside its lock."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def item_options(self, pool_audio: bool | None, ocr: str | None = None) -> ItemOptions:
        """The index's item options, with this run's request: recorded the first time one is given (an index made
        before they were recorded: read from its items); a change once items were cut the other way is refused."""
        cat = self.engine.store.catalog
        raw = cat.get_meta(ItemOptions.META_KEY)
        if raw is not None:
            recorded = ItemOptions.from_dict(json.loads(raw))
        else:
            recorded = ItemOptions(audio_pooled=cat.has_pooled_audio())
        wanted = recorded if pool_audio is None else replace(recorded, audio_pooled=bool(pool_audio))
        wanted = wanted if ocr is None else replace(wanted, ocr=ocr)
        changed = recorded.differences(wanted)
        counts = cat.counts()["items"]
        if "ocr" in changed and counts.get("image"):
            raise UsageError(f"this index reads text in images with OCR set to {recorded.ocr!r}, and holds "
                             f"{counts['image']} image item(s) read that way; --ocr {wanted.ocr} would mix both. "
                             f"Omit it, or index into another folder (--index)")
        if "audio_pooled" in changed and counts.get("audio"):
            now = "one item per file (pooled windows)" if recorded.audio_pooled else "one item per window"
            raise UsageError(f"this index cuts audio into {now}, and holds {counts['audio']} audio item(s) cut that "
                             f"way; {'--no-pool-audio' if recorded.audio_pooled else '--pool-audio'} would mix both. "
                             f"Omit it, index into another folder (--index), or `mmr remove` the audio first")
        if raw is None or changed:
            with cat.transaction():
                cat.set_meta(ItemOptions.META_KEY, json.dumps(wanted.to_dict()))
        return wanted

    def remember(self, index_type: str | None, memory_budget: int | None) -> None:
        from ..index.choose import KINDS

        if index_type is not None and index_type != "auto" and index_type not in KINDS:
            raise UsageError(f"unknown index type {index_type!r}; valid: auto, {', '.join(KINDS)}")
        if memory_budget is not None and memory_budget <= 0:
            raise UsageError("the memory budget must be a positive number of bytes")
        if memory_budget is not None:  # refuse a budget that cannot hold even what is indexed now
            from ..index.choose import choose_index

            choose_index(self.engine.store.vectors.ntotal, self.engine.dim, memory_budget,
                         None if index_type in (None, "auto") else index_type)
        cat = self.engine.store.catalog
        with cat.transaction():
            if index_type is not None:
                cat.set_meta("index_type", index_type)
            if memory_budget is not None:
                cat.set_meta("memory_budget", str(memory_budget))

    def fit(self) -> None:
        """Convert the vector index when the policy or the collection's size calls for another type."""
        from ..index.build import convert
        from ..index.choose import choose_index, estimate_bytes, nlist_for

        cat, vectors = self.engine.store.catalog, self.engine.store.vectors
        pinned = cat.get_meta("index_type")
        budget = cat.get_meta("memory_budget")
        n = vectors.ntotal
        choice = choose_index(n, self.engine.dim, int(budget) if budget else None,
                              None if pinned in (None, "auto") else pinned)
        current = vectors.kind
        ivf = vectors.ivf
        stale = ivf is not None and choice.needs_training and nlist_for(n) >= 4 * ivf.nlist
        # An ivf-flat index built before ivf-fp16 became the default stays as it is (its scores are exact) while it
        # fits the budget, until its lists go stale and it is rebuilt anyway.
        same = choice.kind == current or (
            pinned in (None, "auto") and (choice.kind, current) == ("ivf-fp16", "ivf-flat")
            and (not budget or estimate_bytes("ivf-flat", n, self.engine.dim) <= int(budget)))
        if (same and not stale) or n < choice.min_train:
            return
        self.engine.store.vectors = convert(vectors, choice)
        self.engine.store.begin()
        self.engine.store.checkpoint()
