"""Relevance next to the raw cosine: one threshold means the same for every pair of modalities.

Targets (issue #14) pinned on the shipped `tiny` space's held-out split, indexed and searched through the
engine like a user's collection (images, sounds, each caption a text file); calibration is fitted by
`mmr calibrate` on another seed's split."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

import mmretrieval as mmr
from mmretrieval.index.choose import ID_BYTES
from mmretrieval.cli import main
from mmretrieval.relevance.evaluate import (
    EVERY_PAIR,
    TARGET_PAIRS,
    at_level,
    collect,
    precision_at,
    spread,
    write_captions,
)
from mmretrieval.train.corpus import generate
from mmretrieval.train.pairs import read_pairs

HELDOUT_SEED, CALIBRATION_SEED = 2000, 3000  # disjoint from training (scripts/train_tiny.sh)


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    root = tmp_path_factory.mktemp("relevance")
    generate(root / "heldout", seed=HELDOUT_SEED, images_per_class=6, sounds_per_class=6)
    generate(root / "calibration", seed=CALIBRATION_SEED, images_per_class=4, sounds_per_class=4)
    pairs = read_pairs(root / "heldout" / "pairs.jsonl")
    write_captions(pairs, root / "heldout" / "captions")
    eng = mmr.Engine(root / "idx", model="tiny")
    eng.index([root / "heldout" / d for d in ("images", "sounds", "captions")])
    eng.close()
    return root, pairs


@pytest.fixture(scope="module")
def records(heldout):
    """Hits of every pair with relevant hits, uncalibrated; then of the five target pairs calibrated with
    `mmr calibrate` (same index)."""
    root, pairs = heldout
    eng = mmr.Engine(root / "idx", readonly=True)
    raw = {p: collect(eng, pairs, *p) for p in EVERY_PAIR}
    eng.close()
    assert main(["calibrate", "--pairs", str(root / "calibration" / "pairs.jsonl"), "--index", str(root / "idx")]) == 0
    eng = mmr.Engine(root / "idx", readonly=True)
    assert eng.relevance.describe()["calibration"] is not None
    cal = {p: collect(eng, pairs, *p) for p in TARGET_PAIRS}
    eng.close()
    return raw, cal


def test_calibrated_relevance_one_threshold_same_precision_for_every_pair(records):
    _, cal = records
    table = precision_at(cal, 0.8)
    print(json.dumps(table, indent=1))
    for pair, row in table.items():
        assert row["precision"] >= 0.90, (pair, row)
        assert row["kept"] >= 0.01, (pair, row)  # it keeps something: not a threshold nothing passes
    assert spread(table) <= 0.10


# Issue #30's target at relevance 0.5, for every pair: precision >= 0.75 and recall >= 0.8 x the ceiling (the best
# recall a per-pair threshold reaches at precision >= 0.8). Two checks of the self-labels carry two of the pairs:
# without the search back, text->audio kept captions of pictures finding square-wave buzzes (precision 0.55); without
# the passages that describe both, audio->audio took half of a label's sounds, split by rhythm (recall 0.54 of 0.80).


def test_uncalibrated_relevance_half_means_likely_relevant(records):
    raw, _ = records
    table = at_level(raw, 0.5)
    print(json.dumps(table, indent=1))
    for pair, row in table.items():
        assert row["precision"] >= 0.75, (pair, row)
        assert row["recall"] >= 0.8 * row["ceiling"], (pair, row)
    # what the earlier rule (0.5 at the median best match) gave, for the record: image->text kept a third of
    # its right hits, image->image under half of its ceiling
    assert table["image->text"]["recall"] >= 0.85 and table["image->image"]["recall"] >= 0.3


def test_no_raw_cosine_threshold_does_as_well(records):
    """One cosine threshold cannot serve every pair: none gives every pair precision >= 0.90 while keeping
    hits, and wherever all pairs keep hits the precisions differ by far more than with calibrated relevance
    (image->image needs a much higher cosine than text->image)."""
    raw, cal = records
    raw = {p: raw[p] for p in TARGET_PAIRS}
    tables = [precision_at(raw, float(t), by="score") for t in np.arange(0.4, 0.95, 0.01)]
    usable = [t for t in tables if all(r["kept"] >= 0.01 for r in t.values())]
    assert usable and not any(all(r["precision"] >= 0.90 for r in t.values()) for t in usable)
    assert min(spread(t) for t in usable) >= 2 * spread(precision_at(cal, 0.8))


def test_min_relevance_and_gap_cutoff(heldout, records, capsys):
    root, _ = heldout
    eng = mmr.Engine(root / "idx", readonly=True)
    every = eng.search("a crimson disc", k=20, types=["image", "audio"])
    assert all(h.relevance is not None and 0 <= h.relevance <= 1 for h in every)
    rel = [h.relevance for h in every]
    assert rel == sorted(rel, reverse=True)  # two result modalities: merged by relevance
    assert every[0].modality == "image" and "red" in every[0].path  # a sound does not crowd out the picture
    kept = eng.search("a crimson disc", k=20, types=["image", "audio"], min_relevance=0.8)
    assert kept and all(h.relevance >= 0.8 for h in kept) and len(kept) < len(every)
    assert [h.id for h in kept] == [h.id for h in every[:len(kept)]]
    gap = eng.search("a crimson disc", k=20, types=["image", "audio"], cutoff="gap")
    assert 0 < len(gap) < 20 and all(h.relevance >= 0.5 for h in gap)
    assert eng.search("a crimson disc", k=5, min_relevance=1.0, types=["audio"]) == []
    with pytest.raises(mmr.UsageError, match="min_relevance"):
        eng.search("x", min_relevance=1.5)
    with pytest.raises(mmr.UsageError, match="valid: none, gap"):
        eng.search("x", cutoff="elbow")
    eng.close()
    assert main(["search", "a crimson disc", "--index", str(root / "idx"), "--type", "audio",
                 "--min-relevance", "1.0"]) == 0
    assert "no results at or above relevance 1.0" in capsys.readouterr().out
    assert main(["search", "a crimson disc", "--index", str(root / "idx"), "--json", "--min-relevance", "0.8"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits and all(h["relevance"] >= 0.8 for h in hits)


def test_relevance_over_http(heldout, records):  # records: calibrated by then
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mmretrieval.server.app import create_app

    root, _ = heldout
    with TestClient(create_app(root / "idx")) as client:
        r = client.get("/search", params={"q": "a crimson disc", "type": "image", "min_relevance": 0.8, "k": 20})
        assert r.status_code == 200 and r.json() and all(h["relevance"] >= 0.8 for h in r.json())
        r = client.post("/search", json={"text": "a crimson disc", "types": ["image"], "cutoff": "gap"})
        assert r.status_code == 200 and all(h["relevance"] >= 0.5 for h in r.json())
        assert client.get("/search", params={"q": "x", "min_relevance": 3}).status_code == 422
        r = client.post("/search", json={"text": "x", "min_relevance": "lots"})
        assert r.status_code == 422 and "min_relevance" in r.json()["error"]
        desc = client.get("/relevance").json()
        assert desc["calibration"]["pairs"]["text->image"]["hits"] > 0 and "curves" in desc["profile"]
        audit = client.get("/audit").json()
        assert audit["kind"] == "index" and audit["pairs"]["text->image"]["overlap"] < 0.5
        if importlib.util.find_spec("matplotlib"):
            png = client.get("/audit.png")
            assert png.status_code == 200 and png.headers["content-type"] == "image/png"
            path = heldout[0] / "audit-http.png"
            path.write_bytes(png.content)
            _png_ok(path)


def test_profile_is_stored_by_the_writer_and_reused_by_readers(heldout, records, monkeypatch):
    from mmretrieval.relevance.scorer import RelevanceScorer

    root, _ = heldout
    eng = mmr.Engine(root / "idx", readonly=True)
    monkeypatch.setattr(RelevanceScorer, "compute", lambda *a, **k: pytest.fail("a reader recomputed the profile"))
    desc = eng.relevance.describe()["profile"]
    assert {"text->image", "image->text", "text->audio", "image->image"} <= set(desc["curves"])
    assert all(c["probes"] >= 8 and c["z_at_0.5"] is not None for k, c in desc["curves"].items() if "text" in k)
    assert desc["null_sample"]["image"] == 288
    eng.close()


def test_a_calibration_from_another_space_is_ignored(heldout, records, tmp_path):
    import shutil

    from mmretrieval.relevance.calibration import Calibration
    from mmretrieval.relevance.scorer import CALIBRATION_KEY

    root, _ = heldout
    shutil.copytree(root / "idx", tmp_path / "idx")
    eng = mmr.Engine(tmp_path / "idx")
    cal = Calibration.from_json(eng.store.catalog.get_meta(CALIBRATION_KEY))
    calibrated = eng.search("a crimson disc", k=5, types=["image"])
    cal.fingerprint = "0000000000000000"
    eng.relevance.save_calibration(cal)
    other = eng.search("a crimson disc", k=5, types=["image"])
    assert eng.relevance.calibration is None
    assert [h.id for h in other] == [h.id for h in calibrated]
    assert [round(h.relevance, 6) for h in other] != [round(h.relevance, 6) for h in calibrated]
    eng.close()


def test_calibrate_needs_labels_or_partners_and_says_what_is_missing(heldout, tmp_path):
    root, _ = heldout
    (tmp_path / "few.jsonl").write_text(json.dumps({"image": str(next((root / "heldout" / "images").iterdir())),
                                                    "caption": "a red circle", "label": "red circle"}) + "\n")
    with pytest.raises(mmr.UsageError, match="enough relevant and irrelevant"):
        mmr.Engine(root / "idx").calibrate(tmp_path / "few.jsonl")


def _png_ok(path, min_size=(600, 250)):
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] >= min_size[0] and im.size[1] >= min_size[1]
        px = np.asarray(im.convert("RGB"), np.float32)
    assert px.std() > 10                                              # not blank
    assert len(np.unique(px.reshape(-1, 3)[::7], axis=0)) > 20        # histograms, text: many colours


def test_audit_with_pairs_table_json_and_png(heldout, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    root, _ = heldout
    pairs = str(root / "heldout" / "pairs.jsonl")
    assert main(["audit", "--pairs", pairs, "--model", "tiny", "--png", str(tmp_path / "a.png"), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    _png_ok(tmp_path / "a.png")
    it = rep["pairs"]["image->text"]
    assert it["matched"]["mean"] > it["random"]["p95"]                 # matched clearly above random
    assert 0 <= it["overlap"] < 0.2 and 0 <= it["matched_below_0.7"] <= 1
    assert {"image-text", "audio-text"} <= set(rep["modality_gap"])
    assert main(["audit", "--pairs", pairs, "--model", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "image->text" in out and "overlap" in out and "modality gap image-text" in out


def test_audit_of_an_index_without_pairs(heldout, records, tmp_path, capsys):  # records: calibrated by then
    pytest.importorskip("matplotlib")
    root, _ = heldout
    assert main(["audit", "--index", str(root / "idx"), "--png", str(tmp_path / "i.png"), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    _png_ok(tmp_path / "i.png")
    assert rep["kind"] == "index"
    for pair in ("text->image", "image->text", "audio->text"):
        r = rep["pairs"][pair]
        assert r["best_match"]["mean"] > r["random"]["p95"]
    assert rep["pairs"]["image->image"]["random"]["p99"] < 0.99  # a probe is no random pair of itself
    # the relevance estimate beside the histograms: calibrated pairs say so, the others show their own curve
    assert rep["pairs"]["text->image"]["relevance"]["source"] == "calibrated"
    own = rep["pairs"]["image->audio"]["relevance"]  # no labelled pair relates the two: not calibrated
    assert own["source"] == "self-labelled" and own["probes"] >= 200
    for r in rep["pairs"].values():
        rel = r["relevance"]
        assert 0 <= rel["top_matches_at_or_above_0.5"] <= 1
        assert rel["cosine_where_0.5"] is None or rel["cosine_where_0.5"] > r["random"]["p50"]
    assert main(["audit", "--index", str(root / "idx")]) == 0
    table = capsys.readouterr().out
    assert "cos at 0.5" in table and "self-labelled" in table and "calibrated" in table


def test_compare_recommends_the_trained_space(heldout, tiny_space_dir, tmp_path, capsys):
    root, _ = heldout
    small = tmp_path / "small.jsonl"  # a quick subset: 2 items of each class
    rows = [json.loads(x) for x in (root / "heldout" / "pairs.jsonl").read_text().splitlines()]
    keep = [r for r in rows if (r.get("image") or r.get("audio")).split("-")[-1].startswith(("000", "001"))]
    small.write_text("".join(json.dumps({**r, **{k: str(root / "heldout" / r[k]) for k in ("image", "audio") if k in r}})
                             + "\n" for r in keep))
    assert main(["compare", "--pairs", str(small), "--models", f"tiny,{tiny_space_dir}", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    names = [s["model"] for s in rep["spaces"]]
    assert names == ["tiny", str(tiny_space_dir)]
    trained, untrained = rep["spaces"]
    assert trained["quality"] > untrained["quality"] + 0.2
    assert trained["items_per_s"] > 0 and trained["bytes_per_item"] == 4 * trained["dim"] + ID_BYTES
    assert rep["recommendation"]["model"] == "tiny" and "P@5" in rep["recommendation"]["why"]
    assert main(["compare", "--pairs", str(small), "--models", "tiny,no-such-space"]) == 0
    out = capsys.readouterr().out
    assert "no-such-space: cannot evaluate" in out and "recommendation: tiny" in out
