"""Serving a large collection: compressed indexes with and without exact re-ranking, and reduced dimensions,
side by side with exact search. Each index is built as `mmr index` builds it (`build_ivf`: trained on a sample,
nprobe and the re-scoring factor tuned against exact search), written as the store writes it (base + exact rows),
then opened in a fresh process as `mmr serve` would and measured there:

- recall@10 against exact (brute-force) search, on queries that are new points near the data's clusters;
- one-query search latency p50/p95 (ms), as a server answers one request, over the first pass of the queries and
  (p50) the same queries again;
- that process's private resident memory once the index is open and after the queries, and the file pages it has
  mapped (page cache: shared with other processes, e.g. `mmr serve` workers, and reclaimable); bytes on disk per item.

    python scripts/bench/serve_scale.py [--n 1000000] [--dim 512] [--queries 200] [--json FILE]

Rows: exact search (faiss `IndexFlatIP`, the baseline); ivf-fp16 (the default); ivf-sq8 and ivf-pq by their
codes alone (the re-scoring switched off) and re-scored from the exact rows; PCA-reduced candidates (512 -> 256
-> 128 dims, SQfp16 lists) re-scored from the same rows (a bench-only composition: the dimensionality trade-off).
Vectors are synthetic and clustered (1,000 centres, as scripts/bench/query.py makes them).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from query import clustered  # noqa: E402

PROBE = r"""
import json, os, sys, time
from pathlib import Path
import numpy as np

def rss():
    # (private memory, file pages mapped): the second is page cache, shared with other processes and reclaimable
    got = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("RssAnon", "RssFile")):
                got[line.split(":")[0]] = int(line.split()[1]) * 1024
    return np.array([got["RssAnon"], got["RssFile"]])

kind, path, qpath, tpath = sys.argv[1:5]
from mmretrieval.index.openmp import without_towers
without_towers()
from mmretrieval.index.openmp import load_faiss
faiss = load_faiss()
from mmretrieval.index.exact_rows import ExactRows
from mmretrieval.index.vector_index import VectorIndex
q, truth = np.load(qpath), np.load(tpath)
base = rss()
if kind == "exact":
    index = faiss.read_index(path)
    search = lambda v: index.search(v, 10)
elif kind.startswith("pca"):
    index = faiss.read_index(path)
    rows = ExactRows.load(Path(path))
    faiss.extract_index_ivf(index).nprobe = int(sys.argv[5])
    def search(v):
        _, cand = index.search(v, 10 * rows.factor)
        return rows.rescore(v, cand, 10)
elif kind.endswith("mapped"):
    from mmretrieval.index.mapped import MappedIndex
    vi = MappedIndex.load(path)
    search = lambda v: vi.search(v, 10)
else:
    vi = VectorIndex.load(path)
    if kind.endswith("codes"):
        vi.exact = None
    search = lambda v: vi.search(v, 10)
faiss.omp_set_num_threads(1)  # one request at a time on one thread, as a server's request thread runs
opened = rss()
ts, got, warm = [], [], []
for v in q:  # the first pass: the first touch of each page costs a fault where the lists are mapped
    t = time.perf_counter()
    _, i = search(v[None])
    ts.append(time.perf_counter() - t)
    got.append(i[0])
for v in q:  # the same queries again: the pages they read are in place
    t = time.perf_counter()
    search(v[None])
    warm.append(time.perf_counter() - t)
recall = float(np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(got, truth)]))
after = rss()
print(json.dumps({"recall": recall, "p50_ms": float(np.percentile(ts, 50) * 1e3),
                  "p95_ms": float(np.percentile(ts, 95) * 1e3), "warm_p50_ms": float(np.percentile(warm, 50) * 1e3),
                  "open_MB": float(opened[0] - base[0]) / 2**20,
                  "after_MB": float(after[0] - base[0]) / 2**20, "file_MB": float(after[1] - base[1]) / 2**20}))
"""


def bytes_of(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.exists())


def probe(kind: str, path: Path, tmp: Path, *extra: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, kind, str(path), str(tmp / "q.npy"), str(tmp / "truth.npy"),
                          *extra], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--skip-pca", action="store_true")
    ap.add_argument("--only", default="", help="these index rows only: ivf-fp16,ivf-sq8,ivf-pq,ivf-pq-small")
    args = ap.parse_args()

    from mmretrieval.index.build import build_ivf
    from mmretrieval.index.choose import choose_index
    from mmretrieval.index.exact_rows import ExactRows, companions
    from mmretrieval.index.openmp import load_faiss

    faiss = load_faiss()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((1000, args.dim))
    x = clustered(args.n, args.dim, rng, centres)
    ids = np.arange(args.n, dtype=np.int64)
    q = clustered(args.queries, args.dim, np.random.default_rng(99), centres)
    _, truth = faiss.knn(q, x, 10, metric=faiss.METRIC_INNER_PRODUCT)
    rows_out: list[dict] = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as t:
        tmp = Path(t)
        np.save(tmp / "q.npy", q)
        np.save(tmp / "truth.npy", truth)
        flat = faiss.IndexFlatIP(args.dim)
        flat.add(x)
        faiss.write_index(flat, str(tmp / "exact.faiss"))
        del flat
        rows_out.append({"index": "exact (Flat, fp32)", "build_s": 0.0,
                         "disk_B_per_item": bytes_of([tmp / "exact.faiss"]) / args.n,
                         **probe("exact", tmp / "exact.faiss", tmp)})
        print(rows_out[-1], flush=True)
        parts = [(ids[s:s + 250_000], x[s:s + 250_000]) for s in range(0, args.n, 250_000)]
        # the last: PQ under a budget of 120 bytes an item (64-byte codes at 512 dims)
        for kind, budget in (("ivf-fp16", None), ("ivf-sq8", None), ("ivf-pq", None), ("ivf-pq", 120 * args.n)):
            if args.only and kind + ("-small" if budget else "") not in args.only.split(","):
                continue
            choice = choose_index(args.n, args.dim, budget, kind=kind)
            t0 = time.perf_counter()
            vi = build_ivf(parts, choice, args.dim, tune_with=(ids, x))
            build_s = time.perf_counter() - t0
            path = tmp / f"vectors.{choice.factory}.faiss"
            vi.save(path)
            desc = vi.description
            del vi
            index_bytes, row_bytes = bytes_of([path]), bytes_of(companions(path))
            if kind != "ivf-fp16":
                rows_out.append({"index": f"{choice.factory} codes alone, {desc.split('(')[1].split(',')[1].strip()}",
                                 "build_s": build_s, "disk_B_per_item": index_bytes / args.n,
                                 **probe(f"{kind}-codes", path, tmp)})
                print(rows_out[-1], flush=True)
            rows_out.append({"index": f"{choice.factory}: {desc}", "build_s": build_s,
                             "disk_B_per_item": (index_bytes + row_bytes) / args.n, **probe(kind, path, tmp)})
            print(rows_out[-1], flush=True)
            rows_out.append({"index": f"{choice.factory}: {desc}, lists memory-mapped (a reader: `mmr search`, "
                                      f"`mmr serve`)", "build_s": build_s,
                             "disk_B_per_item": (index_bytes + row_bytes) / args.n,
                             **probe(f"{kind}-mapped", path, tmp)})
            print(rows_out[-1], flush=True)
        if not args.skip_pca:
            nl = choose_index(args.n, args.dim, kind="ivf-fp16").nlist
            for dims in (args.dim // 2, args.dim // 4):
                factory = f"PCA{dims},IVF{nl},SQfp16"
                t0 = time.perf_counter()
                index = faiss.index_factory(args.dim, factory, faiss.METRIC_INNER_PRODUCT)
                index.train(x[np.random.default_rng(1).choice(args.n, min(args.n, 48 * nl), replace=False)])
                for s in range(0, args.n, 100_000):
                    index.add_with_ids(x[s:s + 100_000], ids[s:s + 100_000])
                # nprobe and the factor tuned as build_ivf tunes them (the rows' own re-scoring)
                rows = ExactRows.from_vectors(ids, x)
                best = None
                for nprobe in (8, 16, 32, 64, 128):
                    faiss.extract_index_ivf(index).nprobe = nprobe
                    for factor in (4, 8, 16, 32):
                        rows.factor = factor
                        _, cand = index.search(q[:100], 10 * factor)
                        _, got = rows.rescore(q[:100], cand, 10)
                        r = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth[:100])])
                        if r >= 0.99:
                            best = (nprobe, factor)
                            break
                    if best:
                        break
                best = best or (128, 32)
                rows.factor = best[1]
                build_s = time.perf_counter() - t0
                path = tmp / f"vectors.pca{dims}.faiss"
                faiss.write_index(index, str(path))
                rows.save(path, ids)
                del index
                rows_out.append({"index": f"{factory} (nprobe {best[0]}), re-scored x{best[1]} from {args.dim}-d rows",
                                 "build_s": build_s,
                                 "disk_B_per_item": (bytes_of([path]) + bytes_of(companions(path))) / args.n,
                                 **probe(f"pca{dims}", path, tmp, str(best[0]))})
                print(rows_out[-1], flush=True)
    print(f"\n{args.n:,} x {args.dim} (clustered synthetic), {args.queries} queries, one thread per query")
    print("| index | recall@10 | p50 / p95 ms (again: p50) | private MB (open / after queries) | file pages mapped MB | "
          "disk bytes per item | build s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows_out:
        print(f"| {r['index']} | {r['recall']:.3f} | {r['p50_ms']:.2f} / {r['p95_ms']:.2f} ({r['warm_p50_ms']:.2f}) | "
              f"{r['open_MB']:.0f} / {r['after_MB']:.0f} | {r['file_MB']:.0f} | {r['disk_B_per_item']:.0f} | "
              f"{r['build_s']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps({"n": args.n, "dim": args.dim, "rows": rows_out}, indent=1))


if __name__ == "__main__":
    main()
