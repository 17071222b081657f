"""Relevance on the shipped `tiny` space's held-out split: precision of the hits one threshold keeps, per pair
of modalities, for raw cosine, uncalibrated relevance and calibrated relevance (fitted by `mmr calibrate`
on a calibration split with another seed); and what relevance adds to a warm query at N items.

Run: `python scripts/bench/relevance.py` (tables + a JSON line; ~3 min on 2 cores) and
`python scripts/bench/relevance.py --cost --n 100000` (the per-query cost of relevance).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import mmretrieval as mmr
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

sys.path.insert(0, str(Path(__file__).parent))
from query import clustered

HELDOUT_SEED, CALIBRATION_SEED = 2000, 3000   # training used other seeds (scripts/train_tiny.sh)


def heldout_index(tmp: Path, model: str = "tiny") -> tuple[mmr.Engine, list]:
    generate(tmp / "heldout", seed=HELDOUT_SEED, images_per_class=6, sounds_per_class=6)
    pairs = read_pairs(tmp / "heldout" / "pairs.jsonl")
    write_captions(pairs, tmp / "heldout" / "captions")
    eng = mmr.Engine(tmp / "idx", model=model)
    eng.index([tmp / "heldout" / d for d in ("images", "sounds", "captions")])
    return eng, pairs


def table(records, threshold: float, by: str) -> dict:
    t = precision_at(records, threshold, by=by)
    return {"threshold": threshold, "by": by, "spread": spread(t), "pairs": t}


def show(name: str, t: dict) -> None:
    cells = "  ".join(f"{k} {v['precision']:.3f} ({v['kept']:.0%})" if v["precision"] is not None else f"{k} -"
                      for k, v in t["pairs"].items())
    sp = "-" if t["spread"] is None else f"{t['spread']:.3f}"
    print(f"{name:<34} spread {sp:<6} {cells}")


def quality(tmp: Path) -> dict:
    eng, pairs = heldout_index(tmp)
    out: dict = {}
    every = {p: collect(eng, pairs, *p) for p in EVERY_PAIR}
    raw = {p: every[p] for p in TARGET_PAIRS}
    out["at_0.5"] = at_level(every)
    print("uncalibrated relevance >= 0.5 (precision / recall of the relevant top-10 hits / ceiling at precision 0.8):")
    for pair, v in out["at_0.5"].items():
        ok = v["precision"] is not None and v["precision"] >= 0.75 and v["recall"] >= 0.8 * v["ceiling"]
        print(f"  {pair:<14} {v['precision'] if v['precision'] is not None else '-':>6} {v['recall']:>6} "
              f"{v['ceiling']:>6}  {'meets' if ok else 'short of'} the target")
    out["cosine"] = [table(raw, t, "score") for t in (0.6, 0.65, 0.7, 0.75, 0.8)]
    out["uncalibrated"] = [table(raw, r, "relevance") for r in (0.3, 0.5, 0.7)]
    generate(tmp / "calibration", seed=CALIBRATION_SEED, images_per_class=4, sounds_per_class=4)
    t = time.perf_counter()
    out["calibrate"] = eng.calibrate(tmp / "calibration" / "pairs.jsonl")
    out["calibrate_s"] = time.perf_counter() - t
    cal = {p: collect(eng, pairs, *p) for p in TARGET_PAIRS}
    out["calibrated"] = [table(cal, r, "relevance") for r in (0.7, 0.8, 0.9)]
    out["gap"] = {f"{q}->{m}": _gap_precision(eng, pairs, q, m) for q, m in TARGET_PAIRS}  # calibrated
    for name in ("cosine", "uncalibrated", "calibrated"):
        print(name)
        for t in out[name]:
            show(f"  {t['by']} >= {t['threshold']}", t)
    print("gap cutoff (calibrated):", {k: v for k, v in out["gap"].items()})
    eng.close()
    return out


def _gap_precision(eng, pairs, q: str, m: str) -> dict:
    """Precision of `--cutoff gap` (top 10 of one modality) and the hits it keeps per query."""
    r = collect(eng, pairs, q, m, cutoff="gap")
    n_queries = len({p.caption for p in pairs if p.caption}) if q == "text" else \
        len({getattr(p, q) for p in pairs if getattr(p, q)})
    return {"precision": round(float(r.relevant.mean()), 3) if r.relevant.size else None,
            "hits_per_query": round(r.relevant.size / max(n_queries, 1), 2)}


def cost(tmp: Path, n: int) -> dict:
    from mmretrieval.ingest.embed import EmbeddedFile
    from mmretrieval.ingest.walk import FileEntry

    eng = mmr.Engine(tmp / "cost", model="tiny")
    rng = np.random.default_rng(0)
    x = clustered(n, eng.dim, rng, rng.standard_normal((1000, eng.dim)))  # as the query bench: nprobe tunes as on real data
    mods = np.array(["image", "audio", "text"])[rng.integers(3, size=n)]
    fp = eng.space.fingerprint
    eng.add_embeddings([EmbeddedFile(FileEntry(f"/s/{i}.{ {'image': 'png', 'audio': 'wav', 'text': 'txt'}[m] }", m, 1, 1),
                                     f"{i:064x}", fp, [({}, None)], x[i:i + 1]) for i, m in enumerate(mods)],
                       checkpoint_seconds=1e9)
    q = x[:200] + 0.01
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    eng.search_vector(q[0], k=10, types=["image"], query_modality="text")  # warm: profile, null, filters

    def timed(fn) -> float:
        ts = []
        for v in q:
            t = time.perf_counter()
            fn(v)
            ts.append(time.perf_counter() - t)
        return float(np.median(ts) * 1e3)

    scorer = eng.relevance
    found = eng.search_vector(q[0], k=10, types=["image"], query_modality="text")
    scores = np.array([h.score for h in found])
    rel_ms = timed(lambda v: scorer.relevance(v, "text", ["image"] * len(scores), scores))
    search_ms = timed(lambda v: eng.search_vector(v, k=10, types=["image"], query_modality="text"))
    filt = eng.searcher._filter(("image", "image"))
    bare_ms = timed(lambda v: eng.store.vectors.search(v[None, :], 26, allowed=filt))
    mixed_ms = timed(lambda v: eng.search_vector(v, k=10, types=["image", "audio"], query_modality="text"))
    t = time.perf_counter()
    scorer.compute()  # what the writer redoes after a commit that moved a modality's count by > 10 %
    profile_s = time.perf_counter() - t
    out = {"n": n, "index": eng.store.vectors.description, "relevance_ms": rel_ms, "faiss_search_ms": bare_ms,
           "search_one_type_ms": search_ms, "search_two_types_ms": mixed_ms, "profile_s": profile_s}
    print(f"{n:,} items ({out['index']}), medians of 200 warm queries: relevance of 10 hits {rel_ms:.3f} ms; "
          f"the FAISS search alone {bare_ms:.2f} ms; engine search with relevance: one type {search_ms:.2f} ms, "
          f"two types (one search each, merged by relevance) {mixed_ms:.2f} ms; the profile (null samples and "
          f"the self-labelled curves of every pair) {profile_s:.2f} s")
    eng.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cost", action="store_true", help="time relevance at --n items instead of measuring quality")
    ap.add_argument("--n", type=int, default=100_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = cost(Path(tmp), a.n) if a.cost else quality(Path(tmp))
    print(json.dumps({"bench": "relevance", **out}, default=str))


if __name__ == "__main__":
    sys.exit(main())
