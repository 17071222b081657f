"""Throughput of `mmr serve` under concurrent clients: worker processes and readers (threads) per process side by
side, one request at a time per process (`1x1`) the baseline.

    python scripts/bench/serve_workers.py [--model tiny] [--clients 8] [--seconds 20] [--configs 1x1,1x2,2x1,2x2]
                                          [--vectors 0]

An index of assets/demo in the given space (and, with --vectors N, N synthetic vectors more, so that the search
itself costs what a large collection's does); then per WORKERSxREADERS a server on a free port, warmed up, and
`--clients` threads each sending text queries (GET /search, k=10, a new connection each) for `--seconds`:
queries per second and latency p50/p95 as the clients saw them, end to end (HTTP, text tower, search, JSON).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ["a red circle", "a blue square", "a green triangle", "a high rising beep", "a low steady buzz",
           "a yellow star on white", "a soft hiss", "two shapes side by side"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.read()


def run(index: Path, workers: int, readers: int, clients: int, seconds: float) -> dict:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "mmretrieval.cli", "serve", "--index", str(index),
                               "--port", str(port), "--workers", str(workers),
                               "--readers", str(readers)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                get(base + "/healthz")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(server.stderr.read().decode()[-3000:])
                time.sleep(0.2)
        for _ in range(4 * workers * len(QUERIES)):  # every worker's towers warm
            get(f"{base}/search?q={urllib.parse.quote(QUERIES[_ % len(QUERIES)])}&k=10")
        lat: list[float] = []
        lock = threading.Lock()
        stop = time.monotonic() + seconds

        def client(c: int) -> None:
            n = c
            while time.monotonic() < stop:
                q = urllib.parse.quote(QUERIES[n % len(QUERIES)])
                t = time.perf_counter()
                get(f"{base}/search?q={q}&k=10")
                with lock:
                    lat.append(time.perf_counter() - t)
                n += 1

        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        return {"workers": workers, "readers": readers, "queries": len(lat), "qps": len(lat) / wall,
                "p50_ms": float(np.percentile(lat, 50) * 1e3), "p95_ms": float(np.percentile(lat, 95) * 1e3)}
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--configs", default="1x1,1x2,2x1,2x2", help="WORKERSxREADERS, comma-separated")
    ap.add_argument("--vectors", type=int, default=0)
    args = ap.parse_args()
    import mmretrieval as mmr

    with tempfile.TemporaryDirectory() as t:
        index = Path(t) / "idx"
        eng = mmr.Engine(index, model=args.model)
        eng.index([ROOT / "assets" / "demo"])
        if args.vectors:
            sys.path.insert(0, str(Path(__file__).parent))
            from query import IMAGE_SHARE, clustered, fill  # noqa: E402

            rng = np.random.default_rng(0)
            x = clustered(args.vectors, eng.dim, rng, rng.standard_normal((1000, eng.dim)))
            fill(eng, x, np.where(rng.random(args.vectors) < IMAGE_SHARE, "image", "text"))
        desc = eng.stats()["index_description"]
        eng.close()
        configs = [tuple(int(n) for n in c.split("x")) for c in args.configs.split(",")]
        rows = [run(index, w, r, args.clients, args.seconds) for w, r in configs]
    print(f"\n`mmr serve` in space {args.model!r}, index {desc}, {args.clients} clients, {args.seconds:g} s each; "
          f"{os.cpu_count()} CPUs")
    print(f"| workers | readers | queries/s | p50 ms | p95 ms | vs {configs[0][0]}x{configs[0][1]} |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['workers']} | {r['readers']} | {r['qps']:.1f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
              f"{r['qps'] / rows[0]['qps']:.2f}x |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
