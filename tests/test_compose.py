"""Composed queries: weighted parts of any modality (and indexed items), summed as unit vectors, normalised,
searched; from Python, the CLI and HTTP."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import mmretrieval as mmr
from mmretrieval.cli import main
from mmretrieval.errors import ItemNotFoundError
from mmretrieval.query import make_query

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    idx = tmp_path_factory.mktemp("compose") / "idx"
    eng = mmr.Engine(idx, model="tiny")
    eng.index([DEMO])
    yield idx, eng
    eng.close()


def _names(hits):
    return [Path(h.path).name for h in hits]


def test_parts_are_a_normalised_weighted_sum_searched_exactly(demo):
    _, eng = demo
    parts = [(1.0, "text", "a red circle"), (-1.0, "text", "red"), (1.0, "text", "blue"),
             (0.5, "image", str(DEMO / "images" / "blue-square.png"))]
    hits = eng.search_parts(parts, k=5, types=["image"])
    vecs = [eng.encode_query(make_query(**{m: v})) for _, m, v in parts]
    combined = sum(w * v for (w, _, _), v in zip(parts, vecs))
    combined /= np.linalg.norm(combined)
    ids = eng.store.catalog.item_ids(["image"])
    x = eng.store.vectors.reconstruct(ids)
    want = ids[np.argsort(-(x @ combined))[:5]]
    assert [h.id for h in hits] == want.tolist()  # the exact top 5 of the combined vector
    np.testing.assert_allclose([h.score for h in hits], np.sort(x @ combined)[::-1][:5], atol=1e-5)
    assert _names(hits)[0] in ("blue-circle.png", "blue-square.png")


def test_arithmetic_moves_the_results(demo):
    _, eng = demo
    assert _names(eng.search("a red circle", k=1, types=["image"])) == ["red-circle.png"]
    swapped = eng.search_parts([(1, "text", "a red circle"), (-1, "text", "red"), (1, "text", "green")], k=1,
                               types=["image"])
    assert _names(swapped) == ["green-circle.png"]
    # an indexed item as a part: "less like" the red circle itself
    red = eng.search("a red circle", k=1, types=["image"])[0]
    away = eng.search_parts([(1, "text", "a red circle"), (-1, "item", red.id)], k=3, types=["image"])
    assert red.id not in [h.id for h in away]


def test_parts_are_validated(demo):
    _, eng = demo
    with pytest.raises(mmr.UsageError, match="non-zero number"):
        eng.search_parts([(0, "text", "x")])
    with pytest.raises(mmr.UsageError, match="cancel out"):
        eng.search_parts([(1, "text", "a red circle"), (-1, "text", "a red circle")])
    with pytest.raises(mmr.UsageError, match="valid: item, "):
        eng.search_parts([(1, "video", "x.mp4")])
    with pytest.raises(mmr.UsageError, match="at least one"):
        eng.search_parts([])
    with pytest.raises(ItemNotFoundError, match="no indexed item with id 999999"):
        eng.search_parts([(1, "item", 999_999)])


def test_cli_add_and_subtract_with_weights(demo, capsys):
    idx, _ = demo
    assert main(["search", "a red circle", "--index", str(idx), "--type", "image", "-k", "1", "--json",
                 "--subtract", "red", "--add", "1:green"]) == 0
    assert [Path(h["path"]).name for h in json.loads(capsys.readouterr().out)] == ["green-circle.png"]
    assert main(["search", "a red circle", "--index", str(idx), "--type", "image", "-k", "1", "--json",
                 "--add-image", "0.25:" + str(DEMO / "images" / "blue-square.png")]) == 0
    assert [Path(h["path"]).name for h in json.loads(capsys.readouterr().out)] == ["red-circle.png"]


def test_http_parts(demo):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mmretrieval.server.app import create_app

    idx, _ = demo
    with TestClient(create_app(idx)) as client:
        r = client.post("/search", json={"types": ["image"], "k": 1, "parts": [
            {"weight": 1, "modality": "text", "value": "a red circle"}, {"weight": -1, "modality": "text", "value": "red"},
            {"weight": 1, "modality": "text", "value": "green"}]})
        assert r.status_code == 200 and Path(r.json()[0]["path"]).name == "green-circle.png"
        r = client.post("/search", json={"parts": "a dog"})
        assert r.status_code == 422 and "parts" in r.json()["error"]
