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
    python scripts/bench/serve_scale.py --n 10000000 --nlist 4096 --only ivf-pq   # 10 M: ~20 GB of disk
    python scripts/bench/serve_scale.py --n 10000000 --nlist 4096 --only none --rows-only   # 10 M, reduced rows

Rows: exact search (faiss `IndexFlatIP` over slices of 1 M vectors, one at a time, the baseline: its latency is the
sum of the slices', its memory all fp32 vectors); ivf-fp16 (the default); ivf-sq8 and ivf-pq by their codes alone
(the re-scoring switched off) and re-scored from the exact rows; reduced candidates re-scored from the same rows (a
bench-only composition, the dimensionality trade-off): PCA to 256 and 128 dims (SQfp16 lists) and OPQ-rotated
64-byte PQ codes, each tuned (nprobe, factor) on queries apart from the measured ones.

Vectors are synthetic and clustered (1,000 centres, as scripts/bench/query.py makes them), made a block at a time
from a seed each time they are read, so no pass holds them all: at 10 M they never exist whole in memory or on disk
except as the index's own exact rows.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
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
elif kind.startswith("reduced"):
    index = faiss.read_index(path)
    rows = ExactRows.load(Path(sys.argv[6]))
    rows.factor = int(sys.argv[7])
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


class Synthetic:
    """Rows [start, stop) of a clustered synthetic collection, made from a seed per block of 100,000 rows whenever
    read (the same rows every time): read like an array, by slice or by row numbers."""

    BLOCK = 100_000

    def __init__(self, n: int, dim: int, centres: np.ndarray, start: int = 0, stop: int | None = None,
                 cache: dict | None = None) -> None:
        self.n, self.dim, self.centres = n, dim, centres
        self.start, self.stop = start, n if stop is None else stop
        self.shape = (self.stop - self.start, dim)
        self._cache = {} if cache is None else cache  # the last block made, one for all views (200 MB at 512 dims)

    def __len__(self) -> int:
        return self.shape[0]

    def view(self, start: int, stop: int) -> "Synthetic":
        return Synthetic(self.n, self.dim, self.centres, self.start + start, self.start + min(stop, len(self)),
                         self._cache)

    def _block(self, b: int) -> np.ndarray:
        got = self._cache.get(b)
        if got is None:
            rng = np.random.default_rng([7, b])
            m = min(self.BLOCK, self.n - b * self.BLOCK)
            x = self.centres[rng.integers(len(self.centres), size=m)] + 0.35 * rng.standard_normal((m, self.dim))
            got = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
            self._cache.clear()  # (threads filling parts side by side may each make a block: at most one kept)
            self._cache[b] = got
        return got

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            rows = np.arange(*key.indices(len(self)))
        else:
            rows = np.asarray(key, np.int64).reshape(-1)
        out = np.empty((rows.size, self.dim), np.float32)
        at = rows + self.start
        order = np.argsort(at, kind="stable")
        blocks = at[order] // self.BLOCK
        for b in np.unique(blocks):
            sel = order[blocks == b]
            out[sel] = self._block(int(b))[at[sel] - b * self.BLOCK]
        return out


def probe(kind: str, path: Path, tmp: Path, *extra: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, kind, str(path), str(tmp / "q.npy"), str(tmp / "truth.npy"),
                          *extra], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def exact_baseline(data: Synthetic, q: np.ndarray, faiss, step: int = 1_000_000) -> tuple[np.ndarray, dict]:
    """Exact search over `data` a slice at a time, one query at a time on one thread: the top 10 of each query and
    its latency (the sum of its searches over the slices)."""
    from mmretrieval.index.build import exact_neighbours

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    per_query = np.zeros(len(q))
    for start in range(0, len(data), step):
        flat = faiss.IndexFlatIP(data.dim)
        flat.add(data[start:start + step])
        for k in range(len(q)):
            t = time.perf_counter()
            flat.search(q[k:k + 1], 10)
            per_query[k] += time.perf_counter() - t
        del flat
    faiss.omp_set_num_threads(threads)
    _, truth = exact_neighbours(q, data, 10)
    return truth, {"recall": 1.0, "p50_ms": float(np.percentile(per_query, 50) * 1e3),
                   "p95_ms": float(np.percentile(per_query, 95) * 1e3), "warm_p50_ms": float("nan"),
                   "open_MB": len(data) * data.dim * 4 / 2**20, "after_MB": len(data) * data.dim * 4 / 2**20,
                   "file_MB": 0.0}


def tune_reduced(index, rows, q: np.ndarray, truth: np.ndarray, faiss) -> tuple[int, int]:
    """The smallest (nprobe, factor) whose re-scored recall@10 reaches 0.99 on these (tuning) queries."""
    for nprobe in (8, 16, 32, 64, 128, 256):
        faiss.extract_index_ivf(index).nprobe = nprobe
        for factor in (4, 8, 16, 32):
            rows.factor = factor
            _, cand = index.search(q, 10 * factor)
            _, got = rows.rescore(q, cand, 10)
            if np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth)]) >= 0.99:
                return nprobe, factor
    return 256, 32


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--nlist", type=int, default=0, help="pin the IVF lists (default: what choose_index picks)")
    ap.add_argument("--skip-reduced", action="store_true", help="no PCA / OPQ rows")
    ap.add_argument("--only", default="", help="these index rows only: ivf-fp16,ivf-sq8,ivf-pq,ivf-pq-small "
                                               "(none: no index rows, with --rows-only)")
    ap.add_argument("--rows-only", action="store_true",
                    help="write the exact rows alone for the reduced rows to re-score from (no lossy index first)")
    args = ap.parse_args()

    from dataclasses import replace

    from mmretrieval.index.build import build_ivf, exact_neighbours
    from mmretrieval.index.choose import choose_index
    from mmretrieval.index.exact_rows import ExactRows, companions
    from mmretrieval.index.openmp import load_faiss

    faiss = load_faiss()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((1000, args.dim))
    data = Synthetic(args.n, args.dim, centres)
    ids = np.arange(args.n, dtype=np.int64)
    q = clustered(args.queries, args.dim, np.random.default_rng(99), centres)
    q_tune = clustered(100, args.dim, np.random.default_rng(98), centres)
    rows_out: list[dict] = []
    t0 = time.perf_counter()
    truth, exact = exact_baseline(data, q, faiss)
    rows_out.append({"index": "exact (Flat, fp32)", "build_s": 0.0, "disk_B_per_item": args.dim * 4.0, **exact})
    print(rows_out[-1], f"{time.perf_counter() - t0:.0f} s", flush=True)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as t:
        tmp = Path(t)
        np.save(tmp / "q.npy", q)
        np.save(tmp / "truth.npy", truth)
        step = 250_000
        parts = [(ids[s:s + step], data.view(s, s + step)) for s in range(0, args.n, step)]
        rows_base: Path | None = None  # a lossy index's exact rows, kept for the reduced rows to re-score from
        # the last: PQ under a budget of 120 bytes an item (64-byte codes at 512 dims)
        for kind, budget in (("ivf-fp16", None), ("ivf-sq8", None), ("ivf-pq", None), ("ivf-pq", 120 * args.n)):
            if args.only and kind + ("-small" if budget else "") not in args.only.split(","):
                continue
            choice = choose_index(args.n, args.dim, budget, kind=kind)
            if args.nlist:
                choice = replace(choice, nlist=args.nlist, nprobe=max(1, choice.nprobe * args.nlist // choice.nlist),
                                 factory=choice.factory.replace(f"IVF{choice.nlist},", f"IVF{args.nlist},"))
            t0 = time.perf_counter()
            vi = build_ivf(parts, choice, args.dim, tune_with=(ids, data), ondisk=tmp / "build")
            build_s = time.perf_counter() - t0
            path = tmp / f"vectors.{choice.factory}.faiss"
            vi.save(path)
            desc = vi.description
            del vi
            shutil.rmtree(tmp / "build", ignore_errors=True)
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
            if row_bytes and rows_base is None:
                rows_base = path
            else:
                path.unlink()
                for c in companions(path):
                    c.unlink(missing_ok=True)
        if args.rows_only and rows_base is None:
            rows_base = tmp / "vectors.rows.faiss"  # the rows as a lossy index keeps them, without that index
            t0 = time.perf_counter()
            ExactRows(args.dim, ids, data).save(rows_base, ids)
            print(f"exact rows written in {time.perf_counter() - t0:.0f} s", flush=True)
        if not args.skip_reduced:
            if rows_base is None:
                raise SystemExit("the reduced rows re-score from a lossy index's exact rows: keep ivf-sq8 or ivf-pq")
            rows = ExactRows.load(rows_base)
            _, truth_tune = exact_neighbours(q_tune, data, 10)
            nl = args.nlist or choose_index(args.n, args.dim, kind="ivf-fp16").nlist
            m = args.dim // 8
            for factory in (f"PCA{args.dim // 2},IVF{nl},SQfp16", f"PCA{args.dim // 4},IVF{nl},SQfp16",
                            f"OPQ{m},IVF{nl},PQ{m}np"):
                t0 = time.perf_counter()
                index = faiss.index_factory(args.dim, factory, faiss.METRIC_INNER_PRODUCT)
                index.train(data[np.sort(np.random.default_rng(1).choice(args.n, min(args.n, 48 * nl),
                                                                          replace=False))])
                for s in range(0, args.n, 100_000):
                    index.add_with_ids(data[s:s + 100_000], ids[s:s + 100_000])
                nprobe, factor = tune_reduced(index, rows, q_tune, ids[truth_tune], faiss)
                build_s = time.perf_counter() - t0
                path = tmp / "vectors.reduced.faiss"
                faiss.write_index(index, str(path))
                del index
                rows_out.append({"index": f"{factory} (nprobe {nprobe}), re-scored x{factor} from {args.dim}-d rows",
                                 "build_s": build_s, "disk_B_per_item": (bytes_of([path]) + bytes_of(
                                     companions(rows_base))) / args.n,
                                 **probe("reduced", path, tmp, str(nprobe), str(rows_base), str(factor))})
                print(rows_out[-1], flush=True)
                path.unlink()
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
