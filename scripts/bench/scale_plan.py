"""Measured inputs for the README's plan for 100 M images ("Beyond one machine").

Measures on this machine, at sizes it can hold, what grows with the collection, and extrapolates each number
to the target with the law it follows (stated beside it):
- shards on disk: bytes per vector (float32, float16) and per parquet metadata row (realistic paths);
- IVF training: k-means seconds at two list counts, extrapolated in (sample size x lists), and the sample's memory;
- filling the lists (the merge's cost): vectors per second added to IVF-PQ, per list count;
- queries: p50 milliseconds and memory of a filled IVF-PQ at --n vectors, with nprobe at the choice's floor;
- the catalog: bytes per item of the SQLite catalog (through `Engine.add_embeddings`).
Vectors are clustered synthetic ones (scripts/bench/query.py), which cost what real ones cost.

Run: `python scripts/bench/scale_plan.py --n 2000000` (prints a table and a JSON line).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import mmretrieval as mmr
from mmretrieval.index.openmp import load_faiss

faiss = load_faiss()  # torch first: see mmretrieval/index/openmp.py
from mmretrieval.index.build import TRAIN_PER_LIST  # noqa: E402
from mmretrieval.index.choose import choose_index, nlist_for  # noqa: E402
from mmretrieval.ingest.embed import EmbeddedFile  # noqa: E402
from mmretrieval.ingest.walk import FileEntry  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from query import clustered  # noqa: E402


def rss() -> int:
    """Resident bytes, after handing freed heap back to the OS (so that freed batches do not count)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def shard_bytes(tmp: Path, dim: int, rows: int = 100_000) -> dict[str, float]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    meta = pa.Table.from_pylist([{
        "image_path": f"/data/photos/{2000 + i % 25}/{i % 12 + 1:02d}/IMG_{i:08d}.jpg",
        "path": f"/data/photos/{2000 + i % 25}/{i % 12 + 1:02d}/IMG_{i:08d}.jpg",
        "sha256": rng.bytes(32).hex(), "ordinal": 0, "locator": '{"width": 4032, "height": 3024}', "text": None,
        "size": int(rng.integers(1e6, 8e6)), "mtime_ns": int(1.6e18 + rng.integers(1e17)),
        "date": float(1.5e9 + rng.integers(3e8)), "date_source": "exif", "tags": ""} for i in range(rows)])
    pq.write_table(meta, tmp / "m.parquet")
    return {"float32_per_vector": 4 * dim, "float16_per_vector": 2 * dim,
            "parquet_per_row": (tmp / "m.parquet").stat().st_size / rows}


def training(dim: int, lists: list[int], rng) -> list[dict[str, float]]:
    out = []
    for nl in lists:
        n = TRAIN_PER_LIST * nl
        x = clustered(n, dim, rng, rng.standard_normal((1000, dim)))
        q = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(q, dim, nl, faiss.METRIC_INNER_PRODUCT)
        t = time.perf_counter()
        index.train(x)
        out.append({"nlist": nl, "sample": n, "seconds": time.perf_counter() - t})
    return out


def fill_and_query(n: int, dim: int, m: int, rng) -> dict[str, float]:
    nl = nlist_for(n)
    choice = choose_index(n, dim, kind="ivf-pq")
    index = faiss.index_factory(dim, f"IVF{nl},PQ{m}np", faiss.METRIC_INNER_PRODUCT)
    centres = rng.standard_normal((1000, dim))
    # Only timing and memory are measured here, so the quantisers train on 16 points a list (the plan's
    # training figures come from `training`); PQ trains on at most 256 points per centroid whatever N is.
    train = clustered(16 * nl, dim, rng, centres)
    t = time.perf_counter()
    index.train(train)
    train_s = time.perf_counter() - t
    del train
    before = rss()
    added = 0
    for start in range(0, n, 250_000):
        x = clustered(min(250_000, n - start), dim, rng, centres)
        t0 = time.perf_counter()
        index.add_with_ids(x, np.arange(start, start + len(x), dtype=np.int64))
        added += time.perf_counter() - t0
        del x
    lists_bytes = rss() - before
    mid = rss()
    faiss.extract_index_ivf(index).set_direct_map_type(faiss.DirectMap.Hashtable)
    map_bytes = rss() - mid
    index.nprobe = choice.nprobe
    qs = clustered(200, dim, rng, centres)
    times = []
    for i in range(200):
        t0 = time.perf_counter()
        index.search(qs[i:i + 1], 10)
        times.append(time.perf_counter() - t0)
    return {"n": n, "nlist": nl, "pq_m": m, "nprobe": choice.nprobe, "train_s": train_s,
            "serialized_bytes_per_vector": faiss.serialize_index(index).nbytes / n,
            "add_vectors_per_s": n / added, "lists_bytes_per_vector": lists_bytes / n,
            "direct_map_bytes_per_vector": map_bytes / n, "query_p50_ms": 1000 * float(np.median(times)),
            "codes_scanned_per_query": n * choice.nprobe / nl}


def catalog_bytes(tmp: Path, n: int, rng) -> float:
    eng = mmr.Engine(tmp / "idx", model="tiny")
    dim, fp = eng.dim, eng.space.fingerprint
    x = clustered(n, dim, rng, rng.standard_normal((100, dim)))
    files = [EmbeddedFile(FileEntry(f"/data/photos/{2000 + i % 25}/{i % 12 + 1:02d}/IMG_{i:08d}.jpg", "image",
                                    3_000_000 + i, 1_600_000_000_000_000_000 + i), f"{i:064x}", fp,
                          [({"width": 4032, "height": 3024}, None)], x[i:i + 1]) for i in range(n)]
    eng.add_embeddings(files, checkpoint_seconds=1e9)
    eng.close()
    return (tmp / "idx" / "catalog.sqlite").stat().st_size / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2_000_000, help="vectors in the measured IVF-PQ index")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--target", type=int, default=100_000_000)
    ap.add_argument("--budget-gib", type=float, default=20, help="memory budget of the target's index")
    ap.add_argument("--catalog-n", type=int, default=200_000)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    target = choose_index(a.target, a.dim, int(a.budget_gib * 2**30), kind="ivf-pq")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shard = shard_bytes(tmp, a.dim)
        train = training(a.dim, [1024, 4096], rng)
        fq = fill_and_query(a.n, a.dim, target.pq_m, rng)
        cat = catalog_bytes(tmp, a.catalog_n, rng)
    # k-means costs (sample x lists x dim) per iteration, and the sample is TRAIN_PER_LIST per list.
    per_unit = train[-1]["seconds"] / (train[-1]["sample"] * train[-1]["nlist"])
    target_sample = TRAIN_PER_LIST * target.nlist
    train_target_s = per_unit * target_sample * target.nlist
    # Adding assigns each vector to its nearest list (cost ~ nlist) and encodes it: rate ~ 1 / nlist.
    add_target_per_s = fq["add_vectors_per_s"] * fq["nlist"] / target.nlist
    # A query scans N * nprobe / nlist codes; its time follows that count.
    scanned = a.target * target.nprobe / target.nlist
    query_target_ms = fq["query_p50_ms"] * scanned / fq["codes_scanned_per_query"]
    plan = {
        "target": a.target, "index": target.factory, "nprobe_floor": target.nprobe,
        "shards_float32_GB": a.target * (shard["float32_per_vector"] + shard["parquet_per_row"]) / 1e9,
        "shards_float16_GB": a.target * (shard["float16_per_vector"] + shard["parquet_per_row"]) / 1e9,
        "train_sample": target_sample, "train_sample_GB": target_sample * a.dim * 4 / 1e9,
        "kmeans_hours_2_cores": train_target_s / 3600,
        "fill_core_hours": 2 * a.target / add_target_per_s / 3600,   # parallel over nodes (build_ivf parts)
        "index_GB": a.target * (fq["lists_bytes_per_vector"] + fq["direct_map_bytes_per_vector"]) / 1e9,
        "query_p50_ms": query_target_ms,
        "catalog_GB": a.target * cat / 1e9,
    }
    print(f"measured: shards {shard['float32_per_vector']} B/vector fp32, {shard['float16_per_vector']} fp16, "
          f"{shard['parquet_per_row']:.0f} B/parquet row; catalog {cat:.0f} B/item ({a.catalog_n:,} items)")
    for t in train:
        print(f"measured: k-means {t['nlist']} lists on {t['sample']:,} points: {t['seconds']:.1f} s")
    print(f"measured at {fq['n']:,}: IVF{fq['nlist']},PQ{fq['pq_m']} trained in {fq['train_s']:.1f} s, filled at "
          f"{fq['add_vectors_per_s']:,.0f} vectors/s, lists {fq['lists_bytes_per_vector']:.1f} B/vector + id map "
          f"{fq['direct_map_bytes_per_vector']:.1f} B/vector, query p50 {fq['query_p50_ms']:.2f} ms at "
          f"nprobe {fq['nprobe']}")
    print(f"\nplan for {a.target:,} vectors ({target.factory}, under {a.budget_gib:g} GiB):")
    print("| quantity | extrapolated |\n| --- | --- |")
    for k, v in plan.items():
        print(f"| {k} | {v:,.2f} |" if isinstance(v, float) else f"| {k} | {v} |")
    print(json.dumps({"measured": {"shards": shard, "training": train, "fill_query": fq, "catalog_bytes_per_item": cat},
                      "plan": plan}))


if __name__ == "__main__":
    main()
