"""Generate the training and held-out corpus (disjoint seeds) for `mmr train` / `mmr eval`.

    python scripts/make_corpus.py --out data/corpus [--images-per-class 100] [--sounds-per-class 60]
"""
from __future__ import annotations

import argparse

from mmretrieval.train.corpus import generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="data/corpus")
    ap.add_argument("--images-per-class", type=int, default=100)
    ap.add_argument("--sounds-per-class", type=int, default=60)
    ap.add_argument("--heldout-per-class", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1000, help="train seed; held-out uses seed + 1000")
    a = ap.parse_args()
    tr = generate(f"{a.out}/train", seed=a.seed, images_per_class=a.images_per_class,
                  sounds_per_class=a.sounds_per_class)
    ho = generate(f"{a.out}/heldout", seed=a.seed + 1000, images_per_class=a.heldout_per_class,
                  sounds_per_class=a.heldout_per_class)
    for k, v in {**{f"train/{k}": v for k, v in tr.items()}, **{f"heldout/{k}": v for k, v in ho.items()}}.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
