"""A LlamaIndex retriever over an `Engine` (the `llamaindex` extra: llama-index-core).

    from mmretrieval.adapters.llama_index import MMRetriever
    retriever = MMRetriever(mmr.Engine("~/media-index", readonly=True), k=5, types=["text", "image"])
    nodes = retriever.retrieve("the invoice from the plumber")

Each hit is a `NodeWithScore`: a `TextNode` (a passage's text, or a line saying what and where a picture, sound
or video moment is; the hit's metadata) scored by its relevance where the index can tell, else its cosine.
`memory=True` recalls the agent's notes instead (`Engine.recall`, in the scope given by user/agent/session).
"""
from __future__ import annotations

from typing import Any, Optional

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from ..engine import Engine
from .documents import hit_metadata, hit_text, note_metadata


class MMRetriever(BaseRetriever):
    """Nodes from an mmretrieval index (or its notes) for a text query."""

    def __init__(self, engine: Engine, *, k: int = 4, types: Optional[list[str]] = None,
                 min_relevance: Optional[float] = None, filters: Optional[dict[str, Any]] = None,
                 mode: Optional[str] = None, memory: bool = False, user: Optional[str] = None,
                 agent: Optional[str] = None, session: Optional[str] = None, **kwargs: Any) -> None:
        self.engine, self.k, self.types, self.min_relevance = engine, k, types, min_relevance
        self.filters, self.mode, self.memory = filters, mode, memory
        self.scope = {"user": user, "agent": agent, "session": session}
        super().__init__(**kwargs)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        query = query_bundle.query_str
        if self.memory:
            return [NodeWithScore(node=TextNode(id_=f"memory:{m.id}", text=m.text, metadata=note_metadata(m)),
                                  score=m.relevance if m.relevance is not None else m.cosine)
                    for m in self.engine.recall(query, k=self.k, **self.scope)]
        from ..modalities import item_modality_names

        hits = self.engine.search(query, k=self.k, types=self.types or list(item_modality_names()),
                                  min_relevance=self.min_relevance, filters=self.filters, mode=self.mode)
        return [NodeWithScore(node=TextNode(id_=str(h.id), text=hit_text(h), metadata=hit_metadata(h)),
                              score=h.relevance if h.relevance is not None else h.score) for h in hits]
