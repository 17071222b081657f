"""Retrievers for agent frameworks: LangChain's passes `langchain_tests`' standard retriever tests unmodified,
LlamaIndex's gives nodes with scores; both find the right passage, picture and note of the demo."""
from __future__ import annotations

from pathlib import Path

import pytest

import mmretrieval as mmr

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    idx = tmp_path_factory.mktemp("adapters") / "idx"
    with mmr.Engine(idx, model="tiny") as eng:
        eng.index([DEMO / "images", DEMO / "docs"])
        eng.remember("Ann's logo is a red circle.", user="ann")
    eng = mmr.Engine(idx)
    yield eng
    eng.close()


langchain_tests = pytest.importorskip("langchain_tests.integration_tests")


class TestMMRetrieverStandard(langchain_tests.RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _engine(self, engine):
        self._eng = engine

    @property
    def retriever_constructor(self):
        from mmretrieval.adapters.langchain import MMRetriever

        return MMRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"engine": self._eng, "types": ["text"]}

    @property
    def retriever_query_example(self) -> str:
        return "a red circle"


def test_langchain_documents_of_passages_pictures_and_notes(engine):
    from langchain_core.documents import Document

    from mmretrieval.adapters.langchain import MMRetriever

    docs = MMRetriever(engine=engine, k=3, types=["text"]).invoke("a blue square")
    assert isinstance(docs[0], Document) and docs[0].page_content == "A blue square on a white background."
    assert docs[0].metadata["source"].endswith("blue-square.txt") and docs[0].metadata["relevance"] > 0.5
    pic = MMRetriever(engine=engine, k=1, types=["image"]).invoke("a red circle")[0]
    assert pic.page_content.startswith("[image] ") and pic.metadata["path"].endswith("red-circle.png")
    note = MMRetriever(engine=engine, k=1, memory=True, user="ann").invoke("what is Ann's logo?")
    assert [d.page_content for d in note] == ["Ann's logo is a red circle."] and note[0].metadata["user"] == "ann"
    assert MMRetriever(engine=engine, memory=True, user="bob").invoke("logo") == []


def test_llama_index_nodes_of_passages_pictures_and_notes(engine):
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import NodeWithScore

    from mmretrieval.adapters.llama_index import MMRetriever

    nodes = MMRetriever(engine, k=3, types=["text"]).retrieve("a blue square")
    assert len(nodes) == 3 and all(isinstance(n, NodeWithScore) for n in nodes)
    assert nodes[0].node.get_content() == "A blue square on a white background."
    assert nodes[0].score == pytest.approx(nodes[0].node.metadata["relevance"]) and nodes[0].score > 0.5
    assert [n.score for n in nodes] == sorted((n.score for n in nodes), reverse=True)
    pic = MMRetriever(engine, k=1, types=["image"]).retrieve("a red circle")[0]
    assert pic.node.metadata["path"].endswith("red-circle.png") and pic.node.node_id == str(pic.node.metadata["id"])
    note = MMRetriever(engine, k=2, memory=True, user="ann").retrieve("what is Ann's logo?")
    assert [n.node.get_content() for n in note] == ["Ann's logo is a red circle."]
    assert MMRetriever(engine, memory=True, user="bob").retrieve("logo") == []
