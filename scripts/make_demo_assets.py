"""Write assets/demo: a few dozen small images, sounds and one-caption text files, deterministic.

    python scripts/make_demo_assets.py [--out assets/demo]
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from mmretrieval.train.corpus import draw_shapes, synth_sound

IMAGES = [(c, s) for c in ("red", "green", "blue", "yellow", "orange", "purple") for s in ("circle", "square", "triangle", "star")]
SOUNDS = [(t, p, c) for t in ("sine", "square", "noise") for p in ("low", "mid", "high") for c in ("steady", "rising", "falling")]
TIMBRE_NOUN = {"sine": "beep", "square": "buzz", "saw": "sawtooth tone", "noise": "hiss"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="assets/demo")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    for sub in ("images", "sounds", "docs"):
        (out / sub).mkdir(parents=True)
    rng = np.random.default_rng(a.seed)
    for color, shape in IMAGES:
        bg = "white" if color != "yellow" else "grey"
        draw_shapes(shape, color, bg, "large", 1, rng, canvas=128).save(out / "images" / f"{color}-{shape}.png")
        (out / "docs" / f"{color}-{shape}.txt").write_text(f"A {color} {shape} on a {bg} background.\n")
    for i, (timbre, pitch, contour) in enumerate(SOUNDS):
        wave = synth_sound(timbre, pitch, contour, "continuous", rng, seconds=2.0, sr=16000)
        ext = "flac" if i % 2 else "wav"
        sf.write(out / "sounds" / f"{pitch}-{contour}-{TIMBRE_NOUN[timbre].replace(' ', '-')}.{ext}", wave, 16000)
        (out / "docs" / f"sound-{pitch}-{contour}-{timbre}.txt").write_text(
            f"A {pitch} {contour} {TIMBRE_NOUN[timbre]}.\n")
    n = {d.name: len(list(d.iterdir())) for d in out.iterdir()}
    print(f"wrote {out}: {n}")


if __name__ == "__main__":
    main()
