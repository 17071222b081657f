"""How well a learned bridge (`mmretrieval/bridge.py`) stands in for re-embedding, by sample size and kind.

Two spaces that can be built here: the shipped `tiny` (old) and `tiny` fine-tuned for a few epochs on another
seed's shapes and captions (new; `mmr train clip --init tiny`). A collection of generated images and captions is
embedded in both. The reference is the new space's full re-embedding: each query's top 10 there. A migration
that has embedded `n` items of a modality (a random sample) searches the new space over those real vectors plus,
for every other item, either nothing ("sample only") or its old vector through the bridge fitted on the `n`
pairs. Recall@10 counts the reference's top 10 found; "up to ties" also counts an item whose reference score is
within 0.01 of the 10th's (synthetic shapes have many near-equal items). The old space's own top 10 (old query,
old vectors) against the reference is the floor a bridge must beat.

Queries: captions (text -> image) and images (image -> image) of a held-out generated set.

Run: `python scripts/bench/bridge.py [--per-class 60] [--epochs 3]` (a table and a JSON line).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mmretrieval import bridge  # noqa: E402


def images_and_captions(root: Path, seed: int, per_class: int) -> tuple[list[str], list[str]]:
    from mmretrieval.train.corpus import generate

    files = generate(root, seed=seed, images_per_class=per_class, sounds_per_class=0)
    rows = [json.loads(line) for line in files["image_pairs.jsonl"].read_text().splitlines()]
    images = sorted({str(root / r["image"]) for r in rows})
    captions = sorted({r["caption"] for r in rows})
    return images, captions


def top(q: np.ndarray, x: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    s = q @ x.T
    idx = np.argsort(-s, axis=1)[:, :k]
    return idx, s


def recall(got: np.ndarray, ref_idx: np.ndarray, ref_scores: np.ndarray, ties: float | None = None) -> float:
    hits = 0
    for g, r, s in zip(got, ref_idx, ref_scores):
        want = set(r.tolist())
        if ties is not None:
            tenth = s[r[-1]]
            want_or_tied = {int(i) for i in np.flatnonzero(s >= tenth - ties)}
            hits += min(len(r), len(set(g.tolist()) & want_or_tied))
        else:
            hits += len(set(g.tolist()) & want)
    return hits / ref_idx.size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--per-class", type=int, default=60, help="generated images per shape x colour class")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of fine-tuning for the new space")
    ap.add_argument("--sizes", default="100,300,1000,3000")
    a = ap.parse_args()
    import mmretrieval as mmr
    from mmretrieval.space.runtime import Space
    from mmretrieval.train.clip import train_clip
    from mmretrieval.train.corpus import generate

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        files = generate(tmp / "train", seed=7, images_per_class=12, sounds_per_class=0)
        train_clip(files["image_pairs.jsonl"], tmp / "tuned", init="tiny", epochs=a.epochs, batch_size=64,
                   progress=False, name="tiny-tuned")
        tuned = time.perf_counter() - t
        images, captions = images_and_captions(tmp / "collection", 3000, a.per_class)
        q_images, q_captions = images_and_captions(tmp / "queries", 4000, 2)
        rng = np.random.default_rng(0)
        q_images = sorted(rng.choice(q_images, size=min(200, len(q_images)), replace=False).tolist())
        q_captions = sorted(rng.choice(q_captions, size=min(200, len(q_captions)), replace=False).tolist())
        spaces = {"old": Space(mmr.resolve_model_arg("tiny"), precision="fp32"),
                  "new": Space(mmr.resolve_model_arg(str(tmp / "tuned")), precision="fp32")}
        vec = {s: {"image": sp.image.encode(images, batch_size=64), "text": sp.text.encode(captions),
                   "q_text": sp.text.encode(q_captions), "q_image": sp.image.encode(q_images, batch_size=64)}
               for s, sp in spaces.items()}
    old, new = vec["old"], vec["new"]
    n_items = len(images)
    agree = float(np.einsum("ij,ij->i", old["image"], new["image"]).mean())  # fine-tuned: the same axes, moved
    rows = []
    for task, q in (("text->image", "q_text"), ("image->image", "q_image")):
        ref_idx, ref_s = top(new[q], new["image"])
        floor = recall(top(old[q], old["image"])[0], ref_idx, ref_s)
        floor_t = recall(top(old[q], old["image"])[0], ref_idx, ref_s, ties=0.01)
        rows.append({"task": task, "kind": "old space", "n": 0, "recall": floor, "recall_ties": floor_t})
        for n in [int(s) for s in a.sizes.split(",") if int(s) < n_items]:
            sample = np.sort(np.random.default_rng(n).choice(n_items, size=n, replace=False))
            rest = np.setdiff1d(np.arange(n_items), sample)
            only = top(new[q], new["image"][sample])[0]
            rows.append({"task": task, "kind": "sample only", "n": n,
                         "recall": recall(sample[only], ref_idx, ref_s),
                         "recall_ties": recall(sample[only], ref_idx, ref_s, ties=0.01)})
            for kind in bridge.KINDS:
                t = time.perf_counter()
                b = bridge.fit(kind, old["image"][sample], new["image"][sample])
                fit_s = time.perf_counter() - t
                mixed = new["image"].copy()
                mixed[rest] = b.apply(old["image"][rest])
                got = top(new[q], mixed)[0]
                cos = float(np.einsum("ij,ij->i", mixed[rest], new["image"][rest]).mean())
                rows.append({"task": task, "kind": kind, "n": n, "fit_s": round(fit_s, 3), "cosine": round(cos, 4),
                             "recall": recall(got, ref_idx, ref_s), "recall_ties": recall(got, ref_idx, ref_s, ties=0.01)})
    print(f"collection: {n_items} images; queries: {len(q_captions)} captions, {len(q_images)} images; new space: "
          f"tiny fine-tuned {a.epochs} epochs ({tuned:.0f} s); old and new vectors of an image agree at cosine "
          f"{agree:.3f} on average")
    print("| task | bridge | pairs | recall@10 | up to ties | bridged cosine | fit |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['task']} | {r['kind']} | {r['n'] or ''} | {r['recall']:.3f} | {r['recall_ties']:.3f} | "
              f"{r.get('cosine', '')} | {str(r['fit_s']) + ' s' if 'fit_s' in r else ''} |")
    print(json.dumps({"items": n_items, "epochs": a.epochs, "rows": rows}))


if __name__ == "__main__":
    main()
