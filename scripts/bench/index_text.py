"""Text encoding: our path (length-sorted batches trimmed to their longest text, prepacked weights, the
precision an index would choose) vs open_clip's `encode_text` (every text padded to the full context),
same random ViT-B-32 weights (a checkpoint file made here), same texts.

    python scripts/bench/index_text.py [--model ViT-B-32] [--n 256] [--batch-size 32] [--precision auto]

Two workloads: short captions, and passages cut from generated documents by the product's splitter.
Prints a table and a JSON line with texts/s, the ratio, and the largest difference between the two.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

import mmretrieval as mmr
from mmretrieval.encoders.passages import split_passages
from mmretrieval.space.runtime import Space
from mmretrieval.space.precision import describe
from mmretrieval.train.corpus import generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--precision", default="auto")
    a = ap.parse_args()
    torch.manual_seed(0)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        # random weights on purpose: the speed is the same as real ones, and both sides load this file
        torch.save(open_clip.create_model(a.model).state_dict(), f"{d}/random.pt")
        model, _, _ = open_clip.create_model_and_transforms(a.model, pretrained=f"{d}/random.pt")
        model.eval()
        tok = open_clip.get_tokenizer(a.model)
        space = Space(mmr.resolve_model_arg(f"{a.model}:{d}/random.pt"), precision=a.precision)
        enc = space.text
        generate(d, seed=5, images_per_class=1, sounds_per_class=1)
        rows = [json.loads(x) for x in open(f"{d}/pairs.jsonl")]
    captions = [r["caption"] for r in rows][: a.n]
    doc = " ".join(c.capitalize() + "." for c in [r["caption"] for r in rows] * 3)
    passages = [p.text for p in split_passages(doc, enc.count_tokens, enc.max_passage_tokens)][: a.n]
    results = []
    for name, texts in (("captions", captions), ("passages", passages)):
        with torch.inference_mode():
            enc.encode(texts[:8])
            t = time.perf_counter()
            ref = np.concatenate([F.normalize(model.encode_text(tok(texts[i:i + a.batch_size])), dim=-1).numpy()
                                  for i in range(0, len(texts), a.batch_size)])
            base = time.perf_counter() - t
            t = time.perf_counter()
            ours = enc.encode(texts, batch_size=a.batch_size)
            fast = time.perf_counter() - t
        lens = [enc.count_tokens(x) + 2 for x in texts]
        results.append({"workload": name, "texts": len(texts), "mean_tokens": float(np.mean(lens)),
                        "baseline_texts_per_s": len(texts) / base, "ours_texts_per_s": len(texts) / fast,
                        "ratio": base / fast, "max_abs_diff": float(np.abs(ours - ref).max())})
    print(f"{a.model}, open_clip fp32 vs ours {describe(space.precision)}, {torch.get_num_threads()} threads, "
          f"batch {a.batch_size}")
    print(f"{'workload':<10}{'texts':>6}{'tokens':>8}{'open_clip/s':>13}{'ours/s':>9}{'ratio':>7}{'max diff':>10}")
    for r in results:
        print(f"{r['workload']:<10}{r['texts']:>6}{r['mean_tokens']:>8.1f}{r['baseline_texts_per_s']:>13.1f}"
              f"{r['ours_texts_per_s']:>9.1f}{r['ratio']:>7.2f}{r['max_abs_diff']:>10.1e}")
    print(json.dumps({"bench": "index_text", "model": a.model, "precision": describe(space.precision), "rows": results}))


if __name__ == "__main__":
    main()
