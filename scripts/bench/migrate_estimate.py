"""How close `mmr migrate`'s estimate comes to the time the migration then takes, on this machine.

For each collection size and each pair of spaces: a generated collection (shapes, tones and captions from
`mmretrieval.synth`, a third each, every file's content its own) is indexed in the first space; `Engine.migrate(dry_run=True)` indexes its
sample and estimates the rest; then `Engine.migrate` is timed up to the switch (its own second sample included:
the user's command runs both). Ratio = estimate / actual time of the work after the first sample. Memory: the
estimate's peak against this process's peak resident memory during that call (counted from its start).

Spaces: the shipped `tiny` and a differently seeded space of the same shape (`tests/tiny_space.py`, made in a
temporary folder), both directions.

Run: `python scripts/bench/migrate_estimate.py --sizes 300 1200` (prints a table and a JSON line); `--vit`:
between tiny and `vit-b-32-openai+wav2clip` with placeholder weights put where downloads land.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def collection(folder: Path, n: int) -> None:
    import soundfile as sf

    from mmretrieval.synth import COLORS, SHAPES, shape_image, tone

    folder.mkdir(parents=True)
    colors, shapes = list(COLORS), list(SHAPES)
    for k in range(n):
        c, s = colors[k % len(colors)], shapes[(k // len(colors)) % len(shapes)]
        # Every file's content its own: a copy would be committed from its twin's vectors, unencoded, which
        # a collection of real photos and recordings rarely allows.
        if k % 3 == 0:
            img = shape_image(c, s, size=96 + k % 200)
            img.putpixel((k % 64, (k // 64) % 64), (k % 251, (k // 251) % 251, 7))
            img.save(folder / f"{k}.png")
        elif k % 3 == 1:
            (folder / f"{k}.txt").write_text(f"A {c} {s} drawn on paper, number {k}. " * (1 + k % 4))
        else:
            sf.write(folder / f"{k}.wav", tone(220.0 * (1 + k % 7) + 0.37 * k, seconds=1.0 + (k % 3)), 16000)


def vit_space(tmp: Path) -> str:
    """`vit-b-32-openai+wav2clip` with seeded placeholder weights where a user's downloads land (a fresh $HOME):
    ViT-B-32's and Wav2CLIP's real costs, without their real weights."""
    from user_caches import UserHome, place_space_weights

    home = UserHome(tmp / "home", tmp / "weights")
    for k in ("MMR_CACHE", "MMR_WAV2CLIP_WEIGHTS", "XDG_CACHE_HOME", "TORCH_HOME", "HF_HUB_CACHE"):
        os.environ.pop(k, None)
    # before the hub library is imported: it reads these once
    os.environ.update(HOME=str(home.root), HF_HOME=str(home.hf_home), HF_ENDPOINT="http://127.0.0.1:9")
    from mmretrieval.space.registry import resolve_model_arg

    place_space_weights(resolve_model_arg("vit-b-32-openai+wav2clip"), home)
    return "vit-b-32-openai+wav2clip"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[300, 1200])
    ap.add_argument("--vit", action="store_true", help="between tiny and vit-b-32-openai+wav2clip (placeholder "
                                                       "weights) instead of tiny and a reseeded tiny")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        other = vit_space(tmp) if args.vit else None  # first: it sets $HOME before the hub library loads
        import mmretrieval as mmr
        from mmretrieval.process_memory import peak_bytes, reset_peak
        from tiny_space import make_tiny_space

        other = other or str(make_tiny_space(tmp / "other"))
        for n in args.sizes:
            lib = tmp / f"lib{n}"
            collection(lib, n)
            for src, dst in (("tiny", other), (other, "tiny")):
                idx = tmp / f"idx{n}"
                shutil.rmtree(idx, ignore_errors=True)
                with mmr.Engine(idx, model=src) as eng:
                    eng.index([lib])
                    est = eng.migrate(dst, dry_run=True)
                    reset_peak()
                    t = time.perf_counter()
                    done = eng.migrate(dst)
                    actual = time.perf_counter() - t
                    peak = peak_bytes()
                name = "vit-b-32" if args.vit else "other"
                rows.append({"files": n, "from": "tiny" if src == "tiny" else name,
                             "to": "tiny" if dst == "tiny" else name, "estimate_s": est.estimate_seconds,
                             "actual_s": round(actual, 2), "ratio": round(est.estimate_seconds / actual, 2),
                             "switched": done.switched, "estimate_peak_mb": round(est.estimate_peak_bytes / 1e6),
                             "actual_peak_mb": round(peak / 1e6),
                             "peak_ratio": round(est.estimate_peak_bytes / peak, 2)})
                print(rows[-1], flush=True)
    print("| files | from → to | estimate | actual | estimate ÷ actual | peak memory: estimate / actual |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['files']} | {r['from']} → {r['to']} | {r['estimate_s']:.1f} s | {r['actual_s']:.1f} s | "
              f"{r['ratio']:.2f} | {r['estimate_peak_mb']:,} / {r['actual_peak_mb']:,} MB |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
