"""Collection views: near-duplicate precision/recall on generated copies, and the cost of each view at scale.

    python scripts/bench/collection_views.py quality            # dupes on synth.write_dupes_set, shipped `tiny`
    python scripts/bench/collection_views.py scale --n 100000   # time and peak memory on clustered vectors

`quality` indexes the generated set (transformed copies of pictures and sounds, a paragraph in two documents,
and their near neighbours: burst shots, recolours, octaves, a paraphrase) and reports precision and recall of the
duplicate pairs at several likeness thresholds, side by side with vectors alone (every candidate within the
radius taken as a copy, what a cosine cut-off does). `scale` builds an index of `n` synthetic 512-dim vectors in
clusters (with a planted copy per 100 items) through the product's own index types and runs the dupes candidate
search, k-means with naming-free clustering, outliers and the projection on them.
"""
from __future__ import annotations

import argparse
import itertools
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def pairs_of(groups) -> set[tuple[str, str]]:
    return {p for g in groups for p in itertools.combinations(sorted(g), 2)}


def quality(args: argparse.Namespace) -> dict:
    from mmretrieval import synth
    from mmretrieval.engine import Engine

    root = Path(tempfile.mkdtemp(prefix="mmr-dupes-"))
    try:
        truth = synth.write_dupes_set(root / "media", scenes=args.scenes, sounds=args.sounds)
        eng = Engine(root / "idx", model=args.model)
        eng.index([root / "media"])
        want = pairs_of(truth["groups"])
        rows = []
        for t in (None, 0.97, 0.95, 0.9, 0.85, 0.8):
            r = eng.dupes(threshold=t)
            got = pairs_of([[m.path for m in g.members] for g in r.groups])
            tp = len(got & want)
            rows.append({"threshold": "default" if t is None else t, "precision": round(tp / max(1, len(got)), 3),
                         "recall": round(tp / len(want), 3), "groups": len(r.groups), "seconds": round(r.seconds, 2)})
        # Vectors alone: every candidate pair within the default radius is called a copy.
        from mmretrieval.collection.dupes import RADIUS

        cat = eng.store.catalog
        path_of = {i: row.path for i, row in cat.items(cat.item_ids().tolist()).items()}
        alone = {}
        for cut in (0.85, 0.9, 0.95, 0.98):
            got = set()
            for m, ids in eng.views._lanes(None):
                for q, hits, scores in eng.views._neighbours(ids, max(cut, min(RADIUS.values())), ids):
                    got |= {tuple(sorted((path_of[q], path_of[int(h)]))) for h in hits if path_of[int(h)] != path_of[q]}
            tp = len(got & want)
            alone[cut] = {"precision": round(tp / max(1, len(got)), 3), "recall": round(tp / len(want), 3)}
        eng.close()
        return {"pairs": len(want), "neighbours": len(truth["neighbours"]), "with_sketches": rows,
                "vectors_alone": alone}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def clustered(n: int, dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        lab = rng.integers(0, clusters, m)
        x = centres[lab] + 0.9 * rng.standard_normal((m, dim)).astype(np.float32)
        out[s:s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    copies = np.arange(1, n, 100)  # a near copy of the item before it, every 100 items: cosines ~0.83-0.999
    sigma = rng.uniform(0.002, 0.03, (copies.size, 1)).astype(np.float32)
    noisy = out[copies - 1] + sigma * rng.standard_normal((copies.size, dim)).astype(np.float32)
    out[copies] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    return out


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scale(args: argparse.Namespace) -> dict:
    from mmretrieval.collection import clusters as clustering
    from mmretrieval.collection import projection
    from mmretrieval.collection.dupes import CANDIDATE_NPROBE, RADIUS, candidate_pairs
    from mmretrieval.index.choose import choose_index
    from mmretrieval.index.vector_index import VectorIndex

    x = clustered(args.n, args.dim, args.clusters)
    ids = np.arange(args.n, dtype=np.int64)
    choice = choose_index(args.n, args.dim)
    t = time.perf_counter()
    index = VectorIndex.build(choice, args.dim, train=x[np.random.default_rng(0).choice(args.n, min(args.n, 100_000),
                                                                                        replace=False)])
    index.add(ids, x)
    build = time.perf_counter() - t

    def neighbours(query_ids, radius, allowed):
        for part, vecs in index.iter_vectors(query_ids, chunk=4096):
            for q, (h, sc) in zip(part, index.range_search(vecs, radius, nprobe=CANDIDATE_NPROBE)):
                yield int(q), h, sc

    out = {"n": args.n, "dim": args.dim, "index": index.description, "build_s": round(build, 1),
           "rss_mb_before_views": round(peak_mb())}
    t = time.perf_counter()
    radius = RADIUS["image"]
    cache, _ = candidate_pairs(ids, radius, None, neighbours)
    out["dupes_candidates_s"] = round(time.perf_counter() - t, 1)
    planted = np.stack([np.arange(1, args.n, 100) - 1, np.arange(1, args.n, 100)], axis=1)
    within = np.einsum("ij,ij->i", x[planted[:, 0]], x[planted[:, 1]]) >= radius  # the exact reference
    found = {tuple(p) for p in cache.pairs.tolist()}
    out["dupes_planted_within_radius"] = int(within.sum())
    out["dupes_planted_found"] = round(sum(tuple(p) in found for p in planted[within].tolist()) / within.sum(), 4)
    out["dupes_candidate_pairs"] = int(cache.pairs.shape[0])
    # As the engine does it: train on a sample read by id, then stream every vector back from the index.
    del x
    k = None if args.k == "auto" else int(args.k)
    t = time.perf_counter()
    rng = np.random.default_rng(0)
    sample_ids = np.sort(rng.choice(args.n, min(args.n, clustering.sample_size(k)), replace=False))
    sample = np.concatenate([v for _, v in index.iter_vectors(sample_ids)])
    model = clustering.train(np.full(sample_ids.size, "image", dtype=object), sample, k)
    a = clustering.Assignment.empty()
    for part, vecs in index.iter_vectors(ids):
        a.add(model, part, np.full(part.size, "image", dtype=object), vecs)
    out["clusters_s"] = round(time.perf_counter() - t, 1)
    out["k"] = model.k
    t = time.perf_counter()
    flagged = clustering.outliers(model, a)
    out["outliers_s"] = round(time.perf_counter() - t, 2)
    out["outliers"] = len(flagged)
    t = time.perf_counter()
    proj = projection.Projection(sample)
    coords = [proj(vecs) for _, vecs in index.iter_vectors(ids)]
    out["map_projection_s"] = round(time.perf_counter() - t, 1)
    out["map_points"] = sum(len(c) for c in coords)
    out["peak_rss_mb"] = round(peak_mb())
    out["vectors_mb"] = round(args.n * args.dim * 4 / 1e6)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--model", default="tiny")
    q.add_argument("--scenes", type=int, default=24)
    q.add_argument("--sounds", type=int, default=12)
    s = sub.add_parser("scale")
    s.add_argument("--n", type=int, default=100_000)
    s.add_argument("--dim", type=int, default=512)
    s.add_argument("--clusters", type=int, default=50)
    s.add_argument("-k", default="auto")
    args = ap.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    result = quality(args) if args.what == "quality" else scale(args)
    print(json.dumps({"date": started, **result}, indent=2))


if __name__ == "__main__":
    main()
