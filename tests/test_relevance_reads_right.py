"""Relevance as a user reads it (issue #30): the demo's queries, the rule line where relevance falls below 0.5,
modalities merged by relevance, the rule for modalities with too few items, and profiles stored by an older
version."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import mmretrieval as mmr
from mmretrieval.cli import main
from mmretrieval.cli.search import RULE_LINE
from mmretrieval.relevance.profile import VERSION, standing_top
from mmretrieval.relevance.scorer import MIN_ITEMS, PROFILE_KEY

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo"
# scripts/demo.sh's four queries and the file each one's first hit must be
QUERIES = [
    (["a red circle", "-k", "5"], "images/red-circle.png"),
    (["--image", str(DEMO / "images" / "blue-square.png"), "--type", "text", "-k", "3"], "docs/blue-square.txt"),
    (["a high rising beep", "--type", "audio", "-k", "3"], "sounds/high-rising-beep.flac"),
    (["--audio", str(DEMO / "sounds" / "low-steady-buzz.flac"), "--type", "text", "-k", "3"],
     "docs/sound-low-steady-square.txt"),
]


@pytest.fixture(scope="module")
def demo_index(tmp_path_factory):
    idx = tmp_path_factory.mktemp("demo") / "idx"
    assert main(["index", str(DEMO), "--index", str(idx), "--model", "tiny"]) == 0
    return idx


@pytest.mark.parametrize("query,first", QUERIES, ids=["text", "image->text", "text->audio", "audio->text"])
def test_demo_queries_read_right(demo_index, query, first, capsys):
    capsys.readouterr()
    assert main(["search", *query, "--index", str(demo_index), "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["path"].endswith(first)
    rel = [h["relevance"] for h in hits]
    assert rel[0] == max(rel)  # the right answer has the highest relevance
    # no hit below 0.1 above one at or above 0.3: weak hits of one modality do not outrank strong ones of another
    for i, r in enumerate(rel):
        assert not (r < 0.1 and any(s >= 0.3 for s in rel[i + 1:])), rel
    assert rel[0] >= 0.5
    assert main(["search", *query, "--index", str(demo_index)]) == 0
    lines = capsys.readouterr().out.splitlines()
    # the rule follows the last hit at or above 0.5
    assert lines.index(RULE_LINE) == sum(r >= 0.5 for r in rel)


def test_text_query_over_every_modality_merges_by_relevance(demo_index):
    with mmr.Engine(demo_index, readonly=True) as eng:
        hits = eng.search("a red circle", k=12, types=["image", "audio", "text"])
    rel = [h.relevance for h in hits]
    assert rel == sorted(rel, reverse=True)
    assert {h.modality for h in hits if h.relevance >= 0.5} <= {"image", "text"}  # no sound reads relevant
    assert hits[0].path.endswith(("red-circle.png", "red-circle.txt"))


def test_a_modality_with_too_few_items_gets_no_relevance_and_says_why(tmp_path, capsys):
    folder = tmp_path / "few"
    (folder / "images").mkdir(parents=True)
    for name in ("red-circle", "blue-square", "green-star", "yellow-triangle", "orange-circle"):  # 5 < MIN_ITEMS
        shutil.copy(DEMO / "images" / f"{name}.png", folder / "images")
    shutil.copytree(DEMO / "docs", folder / "docs")
    idx = tmp_path / "idx"
    assert main(["index", str(folder), "--index", str(idx), "--model", "tiny"]) == 0
    with mmr.Engine(idx, readonly=True) as eng:
        mixed = eng.search("a red circle", k=8, types=["image", "text"])
        assert any(h.modality == "image" for h in mixed)
        assert all((h.relevance is None) == (h.modality == "image") for h in mixed)
        scores = [h.score for h in mixed]
        assert scores == sorted(scores, reverse=True)  # with a hit lacking relevance, everything by cosine
        # an image query: too few images to probe with, so the pair image->text uses the default curve
        by_image = eng.search(image=str(folder / "images" / "blue-square.png"), k=3, types=["text"])
        assert all(h.relevance is not None for h in by_image)
        curves = eng.relevance.describe()["profile"]["curves"]
        assert "image->text" not in curves and "text->text" in curves
    capsys.readouterr()
    assert main(["search", "a red circle", "--index", str(idx), "--type", "image"]) == 0
    out = capsys.readouterr().out
    assert " -- " in out and f"at least {MIN_ITEMS} items" in out and RULE_LINE not in out
    capsys.readouterr()


def test_a_profile_stored_by_the_earlier_version_is_recomputed(demo_index, tmp_path):
    idx = tmp_path / "old"
    shutil.copytree(demo_index, idx)
    with mmr.Engine(idx) as eng:
        ids = {m: eng.store.catalog.item_ids([m]).tolist() for m in ("image", "audio", "text")}
        counts = {m: len(v) for m, v in ids.items()}
        old = {"counts": counts, "null_ids": ids, "top1": {"text->image": [2.9, 0.25]}}  # version 1's shape
        with eng.store.catalog.transaction():
            eng.store.catalog.set_meta(PROFILE_KEY, json.dumps(old))
    with mmr.Engine(idx, readonly=True) as eng:  # a reader computes its own and leaves the stored one
        assert eng.search("a red circle", k=1, types=["image"])[0].relevance >= 0.5
        assert "top1" in json.loads(eng.store.catalog.get_meta(PROFILE_KEY))
    with mmr.Engine(idx) as eng:  # the writer replaces it
        assert eng.relevance.store_profile_if_stale()
        stored = json.loads(eng.store.catalog.get_meta(PROFILE_KEY))
        assert stored["version"] == VERSION == 4 and {"text->image", "text->image|top"} <= set(stored["curves"])


def test_the_hit_heading_a_group_is_read_from_the_query_s_own_ranking():
    rng = np.random.default_rng(0)
    z = np.concatenate([[2.2], 1.0 + 0.01 * rng.standard_normal(31)])  # one match far above an even crowd
    scores = 0.3 + 0.1 * z
    order = rng.permutation(z.size)  # the hits come in any order
    assert standing_top(z[order], scores[order], items=100) == int(np.flatnonzero(order == 0)[0])
    # the query itself (an indexed file searched by) stands apart alone: left out, the same group is read
    z_self, s_self = np.concatenate([[9.0], z]), np.concatenate([[1.0], scores])
    assert standing_top(z_self, s_self, items=100) == 1
    assert standing_top(z[1:], scores[1:], items=100) is None  # an even crowd heads nothing
    assert standing_top(z[:2], scores[:2], items=100) is None  # too few hits to read a drop from
