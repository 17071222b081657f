"""What a one-off command costs in a fresh process: `mmr search` by text, by image, and `mmr index` of a few
photos, each run as a user runs it (a new Python process, the CLI's own entry point), wall time and peak memory.

Side by side, alternated run by run: the baseline loads a space as every load did before session 11 (every
tower, and the open_clip model built with its weights, cast and prepacked: `dict(space.encoders)` and
`Space.model` right after the load); "lazy" is the product as it is: a tower after the first loads at the first
need of its modality (a text query loads no audio tower), and towers read back from their cached ONNX exports
never build the torch model.
Uses the caches of the calling user (weights where real downloads land; the ONNX exports of the first run).

Run: `python scripts/bench/cold_start.py --model vit-b-32-openai --runs 5` (prints a table and a JSON line;
the default space, tiny, ships with the repository).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The child: the CLI's `main`, after (baseline) patching the space to build its torch model at load.
CHILD = r"""
import resource, sys
mode = sys.argv.pop(1)
if mode == "baseline":
    from mmretrieval.space.runtime import Space
    load = Space._load
    def eager(self):
        load(self)
        dict(self.encoders)  # what every load did before: every tower,
        self.model  # and the open_clip model built, cast, its weights prepacked
    Space._load = eager
from mmretrieval.cli import main
code = main(sys.argv[1:])
print(f"MAXRSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
sys.exit(code)
"""


def run(mode: str, args: list[str]) -> tuple[float, float]:
    """Seconds and peak resident GB of one command in a fresh process."""
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", CHILD, mode, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"mmr {' '.join(args)} ({mode}) failed:\n{p.stdout}\n{p.stderr}")
    kb = next(int(line.split()[1]) for line in p.stderr.splitlines() if line.startswith("MAXRSS"))
    return seconds, kb / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="tiny", help="a registered space whose weights are in place")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--photos", type=int, default=4, help="photos to index in the `mmr index` row")
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
        index = str(tmp / "index")
        run("lazy", ["index", str(folder), "--index", index, "--model", a.model])  # the first run: exports
        commands = {"search by text": ["search", "a red circle", "--index", index, "-k", "3"],
                    "search by image": ["search", "--image", str(photos[0]), "--index", index, "-k", "3"]}
        results: dict[str, dict[str, list[tuple[float, float]]]] = {}
        for r in range(a.runs):
            for mode in ("baseline", "lazy"):
                for name, args in commands.items():
                    results.setdefault(name, {}).setdefault(mode, []).append(run(mode, args))
                some = tmp / f"some-{mode}-{r}"
                some.mkdir()
                for p in photos[:a.photos]:
                    (some / p.name).write_bytes(p.read_bytes())
                name = f"index {a.photos} photos (new index)"
                results.setdefault(name, {}).setdefault(mode, []).append(
                    run(mode, ["index", str(some), "--index", str(tmp / f"idx-{mode}-{r}"), "--model", a.model]))
    rows = []
    print(f"| {a.model}, medians of {a.runs} | baseline: model built at load | lazy (now) | time ratio |")
    print("| --- | --- | --- | --- |")
    for name, by in results.items():
        med = {m: (statistics.median(s for s, _ in v), statistics.median(g for _, g in v)) for m, v in by.items()}
        ratio = med["baseline"][0] / med["lazy"][0]
        print(f"| {name} | {med['baseline'][0]:.2f} s, {med['baseline'][1]:.2f} GB | "
              f"{med['lazy'][0]:.2f} s, {med['lazy'][1]:.2f} GB | {ratio:.2f}x |")
        rows.append({"command": name, "baseline_s": med["baseline"][0], "baseline_gb": med["baseline"][1],
                     "lazy_s": med["lazy"][0], "lazy_gb": med["lazy"][1], "ratio": ratio})
    print(json.dumps({"model": a.model, "runs": a.runs, "rows": rows}))


if __name__ == "__main__":
    main()
