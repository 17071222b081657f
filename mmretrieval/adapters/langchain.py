"""A LangChain retriever over an `Engine` (the `langchain` extra: langchain-core).

    from mmretrieval.adapters.langchain import MMRetriever
    retriever = MMRetriever(engine=mmr.Engine("~/media-index", readonly=True), k=5, types=["text", "image"])
    docs = retriever.invoke("the invoice from the plumber")

Each hit is a `Document`: a passage's text, or for a picture, sound or video moment a line saying what and
where it is; its metadata is the hit's (path, id, modality, where, start/end, relevance, score, date).
`memory=True` recalls the agent's notes instead (`Engine.recall`, in the scope given by user/agent/session).
"""
from __future__ import annotations

from typing import Any, Optional

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from ..engine import Engine
from .documents import hit_metadata, hit_text, note_metadata


class MMRetriever(BaseRetriever):
    """Documents from an mmretrieval index (or its notes) for a text query."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    engine: Engine
    k: int = 4
    types: Optional[list[str]] = None          # None: every modality (passages, pictures, sounds)
    min_relevance: Optional[float] = None
    filters: Optional[dict[str, Any]] = None   # paths, after, before, min_size, max_size, exts
    mode: Optional[str] = None                 # vector (default), keyword, hybrid
    memory: bool = False                       # recall the agent's notes instead of searching the collection
    user: Optional[str] = None
    agent: Optional[str] = None
    session: Optional[str] = None

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **kwargs: Any) -> list[Document]:
        k = kwargs.pop("k", self.k)
        if self.memory:
            notes = self.engine.recall(query, k=k, user=self.user, agent=self.agent, session=self.session, **kwargs)
            return [Document(page_content=m.text, metadata=note_metadata(m), id=f"memory:{m.id}") for m in notes]
        from ..modalities import item_modality_names

        hits = self.engine.search(query, k=k, types=self.types or list(item_modality_names()),
                                  min_relevance=self.min_relevance, filters=self.filters, mode=self.mode, **kwargs)
        return [Document(page_content=hit_text(h), metadata=hit_metadata(h), id=str(h.id)) for h in hits]
