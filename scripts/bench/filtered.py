"""A filtered query at scale: warm p50 of a search restricted to 1 % of N items (a folder) against the same
search unfiltered, and both against brute force (recall@10). Target (issue #15): filtered p50 <= 2x unfiltered
at 1 M items. Run: `python scripts/bench/filtered.py --n 1000000` (prints a line and a JSON line)."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import mmretrieval as mmr
from mmretrieval.ingest.embed import EmbeddedFile
from mmretrieval.ingest.walk import FileEntry

sys.path.insert(0, str(Path(__file__).parent))
from query import clustered  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--share", type=float, default=0.01, help="share of the items the filter keeps")
    ap.add_argument("--queries", type=int, default=200)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        eng = mmr.Engine(Path(tmp) / "idx", model="tiny")
        rng = np.random.default_rng(0)
        x = clustered(a.n, eng.dim, rng, rng.standard_normal((1000, eng.dim)))
        rare = rng.random(a.n) < a.share
        fp = eng.space.fingerprint
        t = time.perf_counter()
        eng.add_embeddings([EmbeddedFile(FileEntry(f"/lib/{'rare' if rare[i] else 'main'}/{i:07d}.jpg", "image", 1, 1),
                                         f"{i:064x}", fp, [({}, None)], x[i:i + 1]) for i in range(a.n)],
                           checkpoint_seconds=1e9)
        fill = time.perf_counter() - t
        ids = np.array(sorted(eng.store.catalog.item_ids().tolist()))  # catalog ids follow insertion order
        q = x[rng.integers(a.n, size=a.queries)] + 0.02 * rng.standard_normal((a.queries, eng.dim)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        spec = {"paths": ["/lib/rare"]}

        def run(filters):
            eng.search_vector(q[0], k=10, types=["image"], filters=filters)  # warm: filter, its vectors
            times, got = [], []
            for v in q:
                t0 = time.perf_counter()
                hits = eng.search_vector(v, k=10, types=["image"], filters=filters)
                times.append(time.perf_counter() - t0)
                got.append([h.id for h in hits])
            return np.array(times) * 1e3, got

        plain_ms, _ = run(None)
        filt_ms, filt = run(spec)
        sub = np.flatnonzero(rare)
        recall = np.mean([len(set(g) & set(ids[sub[np.argsort(-(x[sub] @ v))[:10]]].tolist())) / 10
                          for g, v in zip(filt, q)])
        out = {"bench": "filtered", "n": a.n, "dim": eng.dim, "index": eng.store.vectors.description,
               "filter_share": float(rare.mean()), "fill_s": fill,
               "unfiltered_p50_ms": float(np.median(plain_ms)), "unfiltered_p95_ms": float(np.percentile(plain_ms, 95)),
               "filtered_p50_ms": float(np.median(filt_ms)), "filtered_p95_ms": float(np.percentile(filt_ms, 95)),
               "filtered_recall_at_10": float(recall)}
        out["ratio_p50"] = out["filtered_p50_ms"] / out["unfiltered_p50_ms"]
        print(f"{a.n:,} items ({out['index']}), filter keeps {out['filter_share']:.1%}: engine search p50 / p95 "
              f"unfiltered {out['unfiltered_p50_ms']:.2f} / {out['unfiltered_p95_ms']:.2f} ms, filtered "
              f"{out['filtered_p50_ms']:.2f} / {out['filtered_p95_ms']:.2f} ms (x{out['ratio_p50']:.2f}); filtered "
              f"recall@10 vs brute force {recall:.3f}")
        print(json.dumps(out))
        eng.close()


if __name__ == "__main__":
    main()
