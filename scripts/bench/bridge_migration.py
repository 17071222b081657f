"""Recall@10 in the new space all through a migration that switches through a bridge (`mmr migrate --bridge`),
against the old space's own search: the real pipeline (index, migrate, search), not the arithmetic of
`bridge.py`'s bench.

Old space: the shipped `tiny`; new: `tiny` fine-tuned on another seed's shapes (as in `bridge.py`). A generated
collection of images is indexed in the old space; the reference is the same collection indexed from nothing in
the new space (each query's top 10 there). For each bridge sample size, a copy of the old index is migrated with
`bridge=True` and stopped right after the switch; recall@10 of the new space's searches is measured then, and again
after each quarter of the bridged files is embedded for real (the last: all of them). The old space's recall (its
own queries and vectors against the reference) is the floor: a migration must never search worse than staying.

Run: `python scripts/bench/bridge_migration.py [--per-class 60] [--pairs 100,300,1000,3000]`.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bridge import images_and_captions  # noqa: E402

K = 10


def top_paths(eng, queries: list) -> list[set[str]]:  # noqa: ANN001
    def by(q):  # noqa: ANN001, ANN202
        return eng.search(image=str(q), k=K, types=["image"]) if isinstance(q, Path) else \
            eng.search(q, k=K, types=["image"])
    return [{h.path for h in by(q)} for q in queries]


def recall(got: list[set[str]], ref: list[set[str]]) -> float:
    return sum(len(g & r) for g, r in zip(got, ref)) / sum(len(r) for r in ref)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--per-class", type=int, default=60, help="generated images per shape x colour class")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of fine-tuning for the new space")
    ap.add_argument("--pairs", default="100,300,1000", help="bridge sample sizes (BRIDGE_PAIRS)")
    a = ap.parse_args()
    import numpy as np

    import mmretrieval as mmr
    from mmretrieval.engine import migrating
    from mmretrieval.train.clip import train_clip
    from mmretrieval.train.corpus import generate

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = generate(tmp / "train", seed=7, images_per_class=12, sounds_per_class=0)
        train_clip(files["image_pairs.jsonl"], tmp / "tuned", init="tiny", epochs=a.epochs, batch_size=64,
                   progress=False, name="tiny-tuned")
        new_space = str(tmp / "tuned")
        images, _ = images_and_captions(tmp / "collection", 3000, a.per_class)
        q_images, q_captions = images_and_captions(tmp / "queries", 4000, 2)
        rng = np.random.default_rng(0)
        queries = {"text->image": sorted(rng.choice(q_captions, size=min(200, len(q_captions)), replace=False)),
                   "image->image": [Path(p) for p in sorted(rng.choice(q_images, size=min(96, len(q_images)),
                                                                      replace=False))]}
        folder = tmp / "collection"
        with mmr.Engine(tmp / "old", model="tiny") as old, mmr.Engine(tmp / "ref", model=new_space) as ref:
            old.index([folder])
            ref.index([folder])
            reference = {t: top_paths(ref, qs) for t, qs in queries.items()}
            floor = {t: recall(top_paths(old, qs), reference[t]) for t, qs in queries.items()}
        rows = []
        stop_after_switch = migrating.Migrator._embed_bridged
        for pairs in [int(p) for p in a.pairs.split(",")]:
            idx = tmp / f"migrating-{pairs}"
            shutil.copytree(tmp / "old", idx)
            migrating.BRIDGE_PAIRS = pairs
            migrating.Migrator._embed_bridged = lambda *a_, **k_: None
            t = time.perf_counter()
            with mmr.Engine(idx) as eng:
                report = eng.migrate(new_space, bridge=True)
                switched_s = time.perf_counter() - t
                bridged = eng.store.catalog.bridged()["paths"]
                stages = []
                for quarter in range(5):
                    if quarter:
                        part = bridged[(quarter - 1) * len(bridged) // 4: quarter * len(bridged) // 4]
                        if part:
                            eng.index(part)
                    stages.append({t_: round(recall(top_paths(eng, qs), reference[t_]), 3)
                                   for t_, qs in queries.items()})
                left = eng.store.catalog.bridged()["files"]
            migrating.Migrator._embed_bridged = stop_after_switch
            rows.append({"pairs": report.bridge, "embedded_first": len(images) - len(bridged),
                         "switched_after_s": round(switched_s, 1), "stages": stages, "bridged_left": left})
    print(f"collection: {len(images)} images; queries: {len(queries['text->image'])} captions, "
          f"{len(queries['image->image'])} images; old space alone: text->image {floor['text->image']:.3f}, "
          f"image->image {floor['image->image']:.3f}")
    print("| bridge pairs | switched after | recall@10 text->image: at the switch / 25 % / 50 % / 75 % / all embedded "
          "| image->image: the same |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        tti = " / ".join(f"{s['text->image']:.3f}" for s in r["stages"])
        iti = " / ".join(f"{s['image->image']:.3f}" for s in r["stages"])
        print(f"| {r['pairs'].get('image', 0):,} | {r['switched_after_s']} s | {tti} | {iti} |")
    print(json.dumps({"items": len(images), "floor": floor, "rows": rows}))


if __name__ == "__main__":
    main()
