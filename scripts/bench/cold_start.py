"""What a one-off command costs in a fresh process: `mmr search` by text, image and audio, `mmr info` and `mmr --help`,
each run as a user runs it (a new Python process, the CLI's own entry point), wall time and peak memory.

Side by side, alternated run by run: "loaded space" is a search as it ran before issue #37 (the space loads:
its identity computed by open_clip, torch imported before faiss, the query tower built from its cached ONNX
export); "one-off" is the product as it is: the space's passport vouches for it, and the query tower runs from
its export without torch or open_clip (`space/passport.py`; audio: its network's export and its front end in numpy). `info` and `--help` have one mode (they run no
tower). Python writes its bytecode caches as on a user's machine (a first run fills them).
Uses the caches of the calling user (weights where real downloads land; the ONNX exports of the first run).

Run: `python scripts/bench/cold_start.py --model vit-b-32-openai --runs 5` (prints a table and a JSON line;
the default space, tiny, ships with the repository).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

# The child: the CLI's `main`, after (loaded) turning the one-off path off as it was before it existed.
CHILD = r"""
import resource, sys
mode = sys.argv.pop(1)
if mode == "loaded":
    from mmretrieval.index import openmp
    from mmretrieval.space import passport
    openmp.one_off = lambda: None  # torch first, as every search imported it
    passport.query_encoder = lambda *a: None  # the space loads
from mmretrieval.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:  # --help
    code = e.code or 0
print(f"MAXRSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
sys.exit(code)
"""
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run(mode: str, args: list[str]) -> tuple[float, float]:
    """Seconds and peak resident GB of one command in a fresh process."""
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", CHILD, mode, *args], capture_output=True, text=True, env=ENV)
    seconds = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"mmr {' '.join(args)} ({mode}) failed:\n{p.stdout}\n{p.stderr}")
    kb = next(int(line.split()[1]) for line in p.stderr.splitlines() if line.startswith("MAXRSS"))
    return seconds, kb / 2**20


MODES = ("loaded", "one-off")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="tiny", help="a registered space whose weights are in place")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    from mmretrieval.synth import shape_image

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "photos"
        folder.mkdir()
        for i, (color, shape) in enumerate([("red", "circle"), ("blue", "square"), ("green", "triangle"),
                                            ("black", "circle"), ("red", "square"), ("blue", "triangle")]):
            shape_image(color, shape, size=640).save(folder / f"{i:02d}-{color}-{shape}.jpg", quality=90)
        photos = sorted(folder.iterdir())
        clip = tmp / "sounds" / "clip.wav"  # 5 s: a chirp and a tone at 44.1 kHz (resampled to the tower's rate)
        clip.parent.mkdir()
        t = np.arange(5 * 44100) / 44100
        sf.write(clip, (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.1 * np.sin(2 * np.pi * 880 * t)), 44100)
        index = str(tmp / "index")
        run("one-off", ["index", str(folder), str(clip.parent), "--index", index, "--model", a.model])  # exports
        run("one-off", ["search", "warm the bytecode caches", "--index", index])
        run("one-off", ["search", "--audio", str(clip), "--index", index])  # the first audio query exports its tower
        commands = {"`mmr search \"a red circle\"`": (["search", "a red circle", "--index", index, "-k", "3"], MODES),
                    "`mmr search --image photo.jpg`": (["search", "--image", str(photos[0]), "--index", index, "-k", "3"],
                                                       MODES),
                    "`mmr search --audio clip.wav`": (["search", "--audio", str(clip), "--index", index, "-k", "3"],
                                                      MODES),
                    "`mmr info`": (["info", "--index", index], ("one-off",)),
                    "`mmr --help`": (["--help"], ("one-off",))}
        results: dict[str, dict[str, list[tuple[float, float]]]] = {}
        for r in range(a.runs):
            for name, (args, modes) in commands.items():
                for mode in modes:
                    results.setdefault(name, {}).setdefault(mode, []).append(run(mode, args))
    rows = []
    print(f"| {a.model}, medians of {a.runs} | loaded space (before) | one-off (now) | time ratio |")
    print("| --- | --- | --- | --- |")
    for name, by in results.items():
        med = {m: (statistics.median(s for s, _ in v), statistics.median(g for _, g in v)) for m, v in by.items()}
        now = med["one-off"]
        before = med.get("loaded")
        print(f"| {name} | " + (f"{before[0]:.2f} s, {before[1] * 1024:.0f} MB" if before else "") +
              f" | {now[0]:.2f} s, {now[1] * 1024:.0f} MB | " + (f"{before[0] / now[0]:.2f}x |" if before else "|"))
        rows.append({"command": name, "one_off_s": now[0], "one_off_gb": now[1],
                     **({"loaded_s": before[0], "loaded_gb": before[1], "ratio": before[0] / now[0]} if before else {})})
    print(json.dumps({"model": a.model, "runs": a.runs, "rows": rows}))


if __name__ == "__main__":
    main()
