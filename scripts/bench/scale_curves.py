"""Scale curves: how indexing time, query latency, memory and disk grow from 10 k to 1 M items, and a 10 M-
vector IVF-PQ index merged on disk. Writes a table, a JSON line and a PNG (--png).

    python scripts/bench/scale_curves.py [--sizes 10000,100000,1000000] [--ten-million | --ten-million-from FILE]
                                         [--png FILE]

Per size, a real index folder through the public API (catalog + vectors; synthetic clustered vectors, 80 %
images / 20 % text passages, as scripts/bench/query.py makes them, since no library of a million photos ships
here), with the index type `mmr index` chooses (trained and nprobe-tuned as it would be):

- indexing time = embedding + building. Building (catalog rows, vectors, training, tuning) is measured at
  each size. Embedding is linear in the items: n / the rate measured in this run by `Engine.index` on
  12-MP JPEGs with ViT-B-32 (random weights, the real cost) at the default precision, so it is projected;
- query latency, in a fresh process per size as `mmr serve` would hold the index: warm text query end to
  end (`Engine.search`, default tower runtime) and the search alone from a query vector, p50;
- memory: that process's resident set once the index is open (vectors + catalog), and with the towers loaded;
- disk: the index folder.

`--ten-million`: 10 M vectors in an IVF-PQ index alone (no catalog): the type `choose_index` picks for a
1 GiB budget, its lists merged on disk (`index/build.py`), vectors generated part by part (they never exist
in full): build time, disk, resident memory and query p50 (nprobe at the choice's floor) when read back in a
fresh process. It takes ~45 min on 2 cores; `--ten-million-from FILE` reuses the `ten_million` entry of an
earlier run's JSON line instead (marked as such in the table and the plot): `scale_curves_10m.json` here holds
the one measured for the README.
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

import mmretrieval as mmr

sys.path.insert(0, str(Path(__file__).parent))
from query import IMAGE_SHARE, TEXTS, clustered, fill  # noqa: E402

PROBE = r"""
import json, os, sys, time
import numpy as np
import mmretrieval as mmr

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

texts = json.loads(sys.argv[2])
base = rss()
eng = mmr.Engine(sys.argv[1], readonly=True)
eng.search_vector(np.ones(eng.dim, np.float32) / np.sqrt(eng.dim), k=10)
opened = rss()
eng.search(texts[0])
loaded = rss()
vec = eng.space.text.encode(texts[:1])[0]
e2e, search = [], []
for t in texts:
    t0 = time.perf_counter(); eng.search(t, k=10); e2e.append(time.perf_counter() - t0)
    t0 = time.perf_counter(); eng.search_vector(vec, k=10, types=["image", "audio"], query_modality="text")
    search.append(time.perf_counter() - t0)
print(json.dumps({"index_rss_MB": (opened - base) / 2**20, "with_towers_rss_MB": (loaded - base) / 2**20,
                  "text_e2e_p50_ms": float(np.median(e2e) * 1e3), "search_p50_ms": float(np.median(search) * 1e3),
                  "backends": eng.space.backends}))
"""

PROBE_IVF = r"""
import json, os, sys, time
import numpy as np
import mmretrieval
import faiss

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

base = rss()
index = faiss.read_index(sys.argv[1])
faiss.extract_index_ivf(index).nprobe = int(sys.argv[2])
q = np.load(sys.argv[3])
faiss.omp_set_num_threads(1)
index.search(q[:5], 10)
opened = rss()
ts = []
for v in q:
    t0 = time.perf_counter(); index.search(v[None], 10); ts.append(time.perf_counter() - t0)
print(json.dumps({"rss_MB": (opened - base) / 2**20, "query_p50_ms": float(np.median(ts) * 1e3),
                  "rss_after_queries_MB": (rss() - base) / 2**20}))
"""


def folder_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def embed_rate(tmp: Path, model: str, n: int = 24) -> float:
    """Images per second of `Engine.index` on 12-MP JPEGs (decode, tower, commit), default precision."""
    from index_images import make_folder

    (tmp / "photos").mkdir()
    make_folder(tmp / "photos", n, 0)
    eng = mmr.Engine(tmp / "embed-idx", model=model)
    eng.space  # loaded before the clock starts, as a long run amortises it
    t = time.perf_counter()
    rep = eng.index([tmp / "photos"])
    rate = rep.items_added / (time.perf_counter() - t)
    eng.close()
    return rate


def engine_row(tmp: Path, model: str, n: int, rate: float) -> dict:
    eng = mmr.Engine(tmp / f"idx-{n}", model=model)
    rng = np.random.default_rng(0)
    x = clustered(n, eng.dim, rng, rng.standard_normal((1000, eng.dim)))
    modality = np.where((np.arange(n) // 1000) % 5 < 5 * IMAGE_SHARE, "image", "text")
    eng.index([tmp / "empty"])
    t = time.perf_counter()
    fill(eng, x, modality)
    build_s = time.perf_counter() - t
    kind = eng.store.vectors.description
    eng.close()
    del x
    out = subprocess.run([sys.executable, "-c", PROBE, str(tmp / f"idx-{n}"), json.dumps(TEXTS)],
                         capture_output=True, text=True, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    return {"n": n, "index": kind, "build_s": build_s, "embed_s_projected": n / rate,
            "disk_MB": folder_bytes(tmp / f"idx-{n}") / 2**20, **probe}


class _Generated:
    """A part of synthetic vectors made on demand (the 10 M never exist at once); one part is kept at a time,
    shared by all parts (each part kept its own at first, and 20 parts of 1 GB ran out of memory)."""

    _last: tuple[int, np.ndarray] | None = None

    def __init__(self, n: int, dim: int, seed: int, centres: np.ndarray) -> None:
        self.n, self.dim, self.seed, self.centres = n, dim, seed, centres
        self.shape = (n, dim)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key):
        last = _Generated._last
        if last is None or last[0] != self.seed:
            _Generated._last = None  # free the previous part before making this one
            last = _Generated._last = (self.seed, clustered(self.n, self.dim, np.random.default_rng(self.seed),
                                                            self.centres))
        return last[1][key]


def ten_million(tmp: Path, dim: int, n: int = 10_000_000, part: int = 500_000) -> dict:
    from mmretrieval.index.build import build_ivf
    from mmretrieval.index.choose import choose_index

    centres = np.random.default_rng(0).standard_normal((1000, dim))
    choice = choose_index(n, dim, memory_budget=1 << 30)
    parts = [(np.arange(s, min(s + part, n), dtype=np.int64), _Generated(min(part, n - s), dim, 1 + s // part, centres))
             for s in range(0, n, part)]
    t = time.perf_counter()
    # lists merged on disk: the budget for them is under their 560 MB
    index = build_ivf(parts, choice, dim, workers=1, memory_budget=256 << 20, ondisk=tmp / "ten-million")
    build_s = time.perf_counter() - t
    del index, parts
    _Generated._last = None
    q = clustered(200, dim, np.random.default_rng(99), centres)
    np.save(tmp / "q.npy", q)
    out = subprocess.run([sys.executable, "-c", PROBE_IVF, str(tmp / "ten-million" / "index.faiss"),
                          str(choice.nprobe), str(tmp / "q.npy")], capture_output=True, text=True, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    return {"n": n, "index": f"{choice.factory} (nlist {choice.nlist}, nprobe {choice.nprobe}), lists on disk",
            "build_s": build_s, "disk_MB": folder_bytes(tmp / "ten-million") / 2**20, **probe}


def plot(rows: list[dict], big: dict | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["n"] for r in rows]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
    ax[0].plot(n, [r["embed_s_projected"] / 3600 for r in rows], "o-", label="embedding (projected)")
    ax[0].plot(n, [r["build_s"] / 3600 for r in rows], "o-", label="building the index")
    earlier = " (earlier run)" if big and big.get("earlier_run") else ""
    if big:
        ax[0].plot([big["n"]], [big["build_s"] / 3600], "s", label="10 M IVF-PQ, on disk" + earlier)
    ax[0].set(title="indexing time", ylabel="hours")
    ax[1].plot(n, [r["text_e2e_p50_ms"] for r in rows], "o-", label="text query, end to end")
    ax[1].plot(n, [r["search_p50_ms"] for r in rows], "o-", label="search alone")
    if big:
        ax[1].plot([big["n"]], [big["query_p50_ms"]], "s", label="10 M IVF-PQ search" + earlier)
    ax[1].set(title="query latency (p50)", ylabel="ms")
    ax[2].plot(n, [r["index_rss_MB"] for r in rows], "o-", label="memory: index open")
    ax[2].plot(n, [r["disk_MB"] for r in rows], "o-", label="disk: index folder")
    if big:
        ax[2].plot([big["n"]], [big["rss_MB"]], "s", label="10 M IVF-PQ memory" + earlier)
        ax[2].plot([big["n"]], [big["disk_MB"]], "^", label="10 M IVF-PQ disk" + earlier)
    ax[2].set(title="memory and disk", ylabel="MiB")
    for a in ax:
        a.set(xscale="log", yscale="log", xlabel="items")
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--ten-million", action="store_true", help="add the 10 M IVF-PQ on-disk row")
    ap.add_argument("--ten-million-from", type=Path, help="reuse the 10 M row of an earlier run's JSON line")
    ap.add_argument("--png", type=Path, help="write the plot here")
    a = ap.parse_args()
    import open_clip
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        ckpt = tmp / "vitb32-random.pt"
        torch.save(open_clip.create_model("ViT-B-32").state_dict(), ckpt)
        model = f"ViT-B-32:{ckpt}"
        (tmp / "empty").mkdir()
        rate = embed_rate(tmp, model)
        rows = [engine_row(tmp, model, int(s), rate) for s in a.sizes.split(",")]
        big = ten_million(tmp, 512) if a.ten_million else None
    if a.ten_million_from:
        big = {**json.loads(a.ten_million_from.read_text())["ten_million"], "earlier_run": True}
    print(f"ViT-B-32, embedding {rate:.1f} img/s (12-MP JPEGs, Engine.index, default precision), "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cpus")
    print(f"{'items':>10}  {'index':<30}{'build s':>9}{'embed h*':>9}{'query ms':>9}{'search':>8}"
          f"{'RSS MB':>8}{'+towers':>8}{'disk MB':>9}")
    for r in rows:
        print(f"{r['n']:>10}  {r['index']:<30}{r['build_s']:9.1f}{r['embed_s_projected'] / 3600:9.2f}"
              f"{r['text_e2e_p50_ms']:9.2f}{r['search_p50_ms']:8.2f}{r['index_rss_MB']:8.0f}"
              f"{r['with_towers_rss_MB']:8.0f}{r['disk_MB']:9.0f}")
    if big:
        earlier = "(an earlier run) " if big.get("earlier_run") else ""
        print(f"{big['n']:>10}  {earlier}{big['index']}: build {big['build_s']:.0f} s, "
              f"query {big['query_p50_ms']:.2f} ms, "
              f"RSS {big['rss_MB']:.0f} MB ({big['rss_after_queries_MB']:.0f} after 200 queries), "
              f"disk {big['disk_MB']:.0f} MB")
    print("(* projected: items / the measured embedding rate; everything else measured)")
    if a.png:
        plot(rows, big, a.png)
    print(json.dumps({"bench": "scale_curves", "embed_img_per_s": rate, "rows": rows, "ten_million": big}))


if __name__ == "__main__":
    main()
