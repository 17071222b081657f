"""Warm end-to-end query latency through `Engine.search` at 10 k, 100 k and 1 M items, and recall@10.

    python scripts/bench/query.py [--sizes 10000,100000,1000000] [--model vit-b-32 | tiny]
                                  [--precision auto] [--compact] [--baseline-index ivf-flat]

Each size is a real index folder (catalog + vectors): the items are synthetic (clustered unit vectors,
80 % images and 20 % text passages, one file per 1,000 items) since no library of a million photos
ships with this repository. Its index type is the one `mmr index` chooses for that size (converted
and nprobe-tuned as it would be). Measured warm, in one process, per size:

- text in -> top-10 hits out: `Engine.search("...")` (tokenize, text tower, filtered search over the
  image/audio items, catalog rows for the hits), p50/p95 over distinct queries; and the same with each
  text tower runtime side by side: torch fp32, ONNX Runtime fp32 (same vectors), ONNX Runtime int8;
- image in -> top-10 hits out: `Engine.search(image=path)` on 1-MP JPEGs (decode, image tower, search);
- the search alone, and the same search on an exact flat index: the baseline, side by side;
- recall@10 of the engine's filtered search against exact filtered search (queries near the data).

`--model vit-b-32` uses ViT-B-32 with random weights saved to a checkpoint (the same cost as real
ones, which cannot be downloaded here). `--compact` adds a 1 M row under a 600 MB memory budget;
`--baseline-index` (default ivf-flat, the type chosen before ivf-fp16; `none` to skip) adds a row at the
largest size with that index type pinned, the baseline for the default type side by side.
Prints a table and a JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import mmretrieval as mmr
from mmretrieval.space.runtime import Space
import faiss  # noqa: E402

IMAGE_SHARE = 0.8


def clustered(n: int, d: int, rng: np.random.Generator, centers: np.ndarray) -> np.ndarray:
    out = np.empty((n, d), np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        x = centers[rng.integers(len(centers), size=m)] + 0.35 * rng.standard_normal((m, d))
        out[s:s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def percentiles(ts: list[float]) -> tuple[float, float]:
    return float(np.percentile(ts, 50) * 1e3), float(np.percentile(ts, 95) * 1e3)


def fill(eng: mmr.Engine, x: np.ndarray, modality: np.ndarray) -> np.ndarray:
    """Synthetic items (1,000 per file) committed through the public `Engine.add_embeddings`, as vectors
    embedded elsewhere would be. Returns their ids in the order of `x`."""
    from mmretrieval.ingest.embed import EmbeddedFile
    from mmretrieval.ingest.walk import FileEntry

    fp = eng.space.fingerprint
    files = []
    for s in range(0, len(x), 1000):
        mod = str(modality[s])
        chunk = slice(s, min(s + 1000, len(x)))
        loc = {"width": 640, "height": 480} if mod == "image" else {"start": 0, "end": 80, "line": 1}
        entry = FileEntry(f"/synthetic/{s // 1000:06d}.{'jpg' if mod == 'image' else 'txt'}", mod, 1, 1)
        files.append(EmbeddedFile(entry, f"{s:064x}", fp, [(loc, None if mod == "image" else "a passage")]
                                  * (chunk.stop - chunk.start), x[chunk]))
    eng.add_embeddings(files, checkpoint_seconds=1e9)
    cat = eng.store.catalog
    return np.concatenate([[it.id for it in cat.items_of_file(cat.file(f.entry.path).id)] for f in files])


def make_query_images(root: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:864, 0:1152]
    paths = []
    for i in range(n):
        base = np.stack([128 + 100 * np.sin(xx / rng.uniform(30, 120)), 128 + 100 * np.cos(yy / rng.uniform(30, 120)),
                         128 + 60 * np.sin((xx + yy) / rng.uniform(60, 200))], -1)
        p = root / f"query{i:02d}.jpg"
        Image.fromarray(np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)).save(p, quality=90)
        paths.append(p)
    return paths


TEXTS = [f"a photo of {a} {b} {c}" for a in ("a red", "two small", "an old", "a bright", "my sister's")
         for b in ("dog", "bicycle", "mountain", "birthday cake", "kitchen") for c in ("at dusk", "on the beach")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--model", default="vit-b-32", help="vit-b-32 (random weights, real cost) or a space name")
    ap.add_argument("--precision", default=None, help="for the new indexes (default auto)")
    ap.add_argument("--queries", type=int, default=200, help="recall queries")
    ap.add_argument("--compact", action="store_true", help="add a 1 M row under a 600 MB memory budget")
    ap.add_argument("--baseline-index", default="ivf-flat", help="index type of a baseline row at the largest size")
    a = ap.parse_args()
    import torch

    rows, kept = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = a.model
        if a.model == "vit-b-32":
            import open_clip

            torch.manual_seed(0)
            ckpt = tmp / "vitb32-random.pt"
            torch.save(open_clip.create_model("ViT-B-32").state_dict(), ckpt)
            model = f"ViT-B-32:{ckpt}"
        (tmp / "q").mkdir()
        (tmp / "empty").mkdir()
        qimages = make_query_images(tmp / "q", 20)
        runs = [(int(s), None, None) for s in a.sizes.split(",")]
        largest = max(n for n, _, _ in runs)
        if a.baseline_index != "none":
            runs.append((largest, None, a.baseline_index))
        if a.compact:
            runs.append((largest, "600M", None))
        for n, budget, pinned in runs:
            eng = mmr.Engine(tmp / f"idx-{n}-{budget}-{pinned}", model=model, precision=a.precision)
            dim = eng.dim
            rng = np.random.default_rng(0)
            centers = rng.standard_normal((1000, dim))
            x = clustered(n, dim, rng, centers)
            modality = np.where((np.arange(n) // 1000) % 5 < 5 * IMAGE_SHARE, "image", "text")
            eng.index([tmp / "empty"], memory_budget=None if budget is None else int(600 * 2**20),
                      index_type=pinned)  # the policy
            t = time.perf_counter()
            ids = fill(eng, x, modality)  # commits, then fits the index type (training IVF, tuning nprobe)
            fill_s = time.perf_counter() - t
            convert_s = 0.0  # part of fill_s since the commit goes through add_embeddings
            vec_bytes = sum(f.stat().st_size for f in eng.path.glob("vectors.*.faiss"))

            # recall@10 of the engine's filtered search (image results) against exact filtered search
            img = modality == "image"
            q = x[rng.choice(np.flatnonzero(img), a.queries)] + 0.05 * rng.standard_normal((a.queries, dim)).astype(np.float32)
            q /= np.linalg.norm(q, axis=1, keepdims=True)
            _, truth = faiss.knn(q, x[img], 10, metric=faiss.METRIC_INNER_PRODUCT)
            truth = ids[img][truth]
            got = [[h.id for h in eng.search_vector(v, k=10, types=["image"])] for v in q]
            recall = float(np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth)]))

            # the search alone (engine path: filter + index + catalog rows), and exact flat on the same data
            ts = []
            for v in q[:100]:
                t0 = time.perf_counter()
                eng.search_vector(v, k=10, types=["image", "audio"])
                ts.append(time.perf_counter() - t0)
            s50, s95 = percentiles(ts)
            flat = faiss.IndexFlatIP(dim)
            flat.add(x)
            del x
            ts = []
            for v in q[:30]:
                t0 = time.perf_counter()
                flat.search(v[None], 10)
                ts.append(time.perf_counter() - t0)
            f50, _ = percentiles(ts)
            del flat

            # end to end, warm: text in and image in
            eng.search(TEXTS[0])
            eng.search(image=qimages[0])
            ts = []
            for text in TEXTS:
                t0 = time.perf_counter()
                hits = eng.search(text, k=10)
                ts.append(time.perf_counter() - t0)
                assert len(hits) == 10
            t50, t95 = percentiles(ts)
            # the same text queries with each text tower runtime (e2e = tower + the engine's search from its vector)
            by_tower = {}
            for label, prec, backend in (("torch fp32", "fp32", "torch"), ("onnx fp32", "fp32", "onnx"),
                                         ("onnx int8", "text=int8", "onnx")):
                text = Space(eng.spec, precision=prec, backend=backend).text
                text.encode(TEXTS[:2])
                ts = []
                for q_text in TEXTS:
                    t0 = time.perf_counter()
                    eng.search_vector(text.encode([q_text])[0], k=10, types=["image", "audio"], query_modality="text")
                    ts.append(time.perf_counter() - t0)
                by_tower[label] = percentiles(ts)[0]
            ts = []
            for p in qimages:
                t0 = time.perf_counter()
                eng.search(image=p, k=10)
                ts.append(time.perf_counter() - t0)
            i50, i95 = percentiles(ts)
            rows.append({"n": n, "budget": budget, "index": eng.store.vectors.description, "vector_MB": vec_bytes / 2**20,
                         "text_e2e_p50_ms": t50, "text_e2e_p95_ms": t95, "image_e2e_p50_ms": i50, "image_e2e_p95_ms": i95,
                         "text_e2e_p50_ms_by_tower": by_tower,
                         "search_p50_ms": s50, "search_p95_ms": s95, "exact_flat_search_p50_ms": f50,
                         "recall@10": recall, "fill_s": fill_s, "convert_s": convert_s})
            prec = eng.stats()["space"]["precision"]
            if n == largest and budget is None:
                kept[pinned] = eng  # for the side-by-side run below
            else:
                eng.close()
        side = side_by_side(kept, a.baseline_index) if len(kept) == 2 else None
        for eng in kept.values():
            eng.close()
    print(f"model {a.model}, precision {prec}, torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}; "
          f"items {int(IMAGE_SHARE * 100)} % image / {100 - int(IMAGE_SHARE * 100)} % text")
    print(f"{'items':>9} {'budget':>6}  {'index':<30}{'MB':>6}{'text e2e':>10}{'p95':>7}{'image e2e':>10}{'p95':>7}"
          f"{'search':>8}{'exact':>8}{'recall':>8}")
    for r in rows:
        print(f"{r['n']:>9} {r['budget'] or '-':>6}  {r['index']:<30}{r['vector_MB']:6.0f}{r['text_e2e_p50_ms']:10.2f}"
              f"{r['text_e2e_p95_ms']:7.2f}{r['image_e2e_p50_ms']:10.2f}{r['image_e2e_p95_ms']:7.2f}"
              f"{r['search_p50_ms']:8.2f}{r['exact_flat_search_p50_ms']:8.2f}{r['recall@10']:8.3f}")
    print("(ms; e2e = p50 of Engine.search end to end, warm; search = engine search from a query vector; "
          "exact = faiss flat search on the same vectors, the baseline)")
    labels = list(rows[0]["text_e2e_p50_ms_by_tower"])
    print(f"\ntext query e2e p50 by text tower runtime (ms)\n{'items':>9}" + "".join(f"{x:>13}" for x in labels))
    for r in rows:
        print(f"{r['n']:>9}" + "".join(f"{r['text_e2e_p50_ms_by_tower'][x]:13.2f}" for x in labels))
    if side is not None:
        print(f"\nside by side at {largest:,} items, queries alternating between the two indexes (text e2e p50 ms, "
              f"ONNX Runtime text tower as the index runs it, and with the other runtimes by their vectors):")
        for label, r in side.items():
            print(f"  {label:<12}" + "".join(f"  {k} {v:6.2f}" for k, v in r.items()))
    print(json.dumps({"bench": "query", "model": a.model, "precision": prec, "rows": rows, "side_by_side": side}))


def side_by_side(engines: dict, baseline: str) -> dict[str, dict[str, float]]:
    """Text queries end to end on the default index and the baseline one, alternating query by query (the
    machine's speed drifts; run one after the other, the two rows above differ by that drift too): with the
    engine's own `search`, and with each text tower runtime's vector."""
    towers = {"onnx fp32": ("fp32", "onnx"), "onnx int8": ("text=int8", "onnx")}
    default, base = engines[None], engines[baseline]
    encoders = {k: Space(default.spec, precision=p, backend=b).text for k, (p, b) in towers.items()}
    times: dict[str, dict[str, list[float]]] = {lab: {k: [] for k in ("search", *towers)}
                                                for lab in ("default", baseline)}
    for eng in (default, base):
        eng.search(TEXTS[0])
    for enc in encoders.values():
        enc.encode(TEXTS[:2])
    for _ in range(3):
        for text in TEXTS:
            for lab, eng in (("default", default), (baseline, base)):
                t0 = time.perf_counter()
                eng.search(text, k=10)
                times[lab]["search"].append(time.perf_counter() - t0)
                for k, enc in encoders.items():
                    t0 = time.perf_counter()
                    eng.search_vector(enc.encode([text])[0], k=10, types=["image", "audio"], query_modality="text")
                    times[lab][k].append(time.perf_counter() - t0)
    label = default.store.vectors.kind
    return {(label if lab == "default" else lab): {k: percentiles(v)[0] for k, v in t.items()}
            for lab, t in times.items()}


if __name__ == "__main__":
    main()
