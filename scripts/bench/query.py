"""Query latency and recall at 10 k, 100 k and 1 M items: the index type chosen automatically vs exact flat.

    python scripts/bench/query.py [--sizes 10000,100000,1000000] [--dim 512] [--model tiny] [--json-only]

Vectors are synthetic (clustered, unit length) for the index part; the end-to-end column adds the
query encoder of `--model` (text in -> top-10 hits out), measured warm. Prints a table and a JSON line.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from mmretrieval.index import VectorIndex
from mmretrieval.index.choose import choose_index


def clustered(n: int, d: int, rng: np.random.Generator, centers: np.ndarray) -> np.ndarray:
    out = np.empty((n, d), np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        x = centers[rng.integers(len(centers), size=m)] + 0.35 * rng.standard_normal((m, d))
        out[s:s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def timed(fn, reps: int) -> tuple[float, float]:
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.percentile(ts, 50) * 1e3), float(np.percentile(ts, 95) * 1e3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--model", default="tiny", help="space whose text encoder is timed end to end")
    ap.add_argument("--queries", type=int, default=200)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((1000, a.dim))
    import mmretrieval as mmr
    from mmretrieval.space.loader import Space

    space = Space(mmr.resolve_model_arg(a.model))
    enc_p50, enc_p95 = timed(lambda: space.text.encode(["a red circle on a white background"]), 50)
    rows = []
    for n in [int(s) for s in a.sizes.split(",")]:
        x = clustered(n, a.dim, rng, centers)
        ids = np.arange(n, dtype=np.int64)
        q = x[rng.integers(n, size=a.queries)] + 0.05 * rng.standard_normal((a.queries, a.dim)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        flat = VectorIndex.create(a.dim)
        flat.add(ids, x)
        del x
        _, truth = flat.search(q, 10)
        qi = iter(range(10**9))
        f50, f95 = timed(lambda: flat.search(q[next(qi) % a.queries], 10), min(a.queries, 50))
        rows.append({"n": n, "index": "flat (exact)", "p50_ms": f50, "p95_ms": f95, "recall@10": 1.0, "build_s": 0.0,
                     "bytes": n * a.dim * 4})
        choice = choose_index(n, a.dim)
        if choice.kind != "flat":
            t = time.perf_counter()
            idx = flat.convert(choice)
            build = time.perf_counter() - t
            _, got = idx.search(q, 10)
            recall = float(np.mean([len(set(u) & set(v)) / 10 for u, v in zip(got, truth)]))
            qi = iter(range(10**9))
            p50, p95 = timed(lambda: idx.search(q[next(qi) % a.queries], 10), a.queries)
            rows.append({"n": n, "index": idx.description, "p50_ms": p50, "p95_ms": p95, "recall@10": recall,
                         "build_s": build, "bytes": choice.est_bytes})
        flat = None  # free 2 GB before the next size
    print(f"text encoder of {a.model!r}: p50 {enc_p50:.2f} ms, p95 {enc_p95:.2f} ms (warm)")
    print(f"{'items':>9}  {'index':<36}{'p50 ms':>8}{'p95 ms':>8}{'e2e p50':>9}{'recall@10':>10}{'build s':>9}{'MB':>8}")
    for r in rows:
        r["e2e_p50_ms"] = r["p50_ms"] + enc_p50
        print(f"{r['n']:>9}  {r['index']:<36}{r['p50_ms']:8.2f}{r['p95_ms']:8.2f}{r['e2e_p50_ms']:9.2f}"
              f"{r['recall@10']:10.3f}{r['build_s']:9.1f}{r['bytes'] / 2**20:8.0f}")
    print(json.dumps({"bench": "query", "model": a.model, "encoder_p50_ms": enc_p50, "rows": rows}))


if __name__ == "__main__":
    main()
