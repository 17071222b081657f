"""Image indexing: `mmr index` (our pipeline) vs the naive loop, same random ViT-B-32 weights, same files.

    python scripts/bench/index_images.py [--jpegs 60] [--pngs 12] [--batch-size 32] [--device cuda --copies 8]

The folder: 12-MP JPEGs (photo-like, with EXIF orientation) and 1-MP PNGs, generated (`--copies`: each file
again under other names, a few bytes after its end so that every copy is new content to the index). The naive
loop is what clip-retrieval/rclip do: PIL full decode + open_clip preprocess + fp32 `encode_image` in batches
(on `--device`).
Also measured in the same run: model-only throughput at the precision our index chose (`--precision`,
default auto: bf16 where the CPU has native bf16; image=int8 runs the tower under ONNX Runtime), run as the
index runs it (int8: one image per core, `Encoder.per_core`; batched too, for reference), decode-only
throughput of our decode path on all cores, and the serial bound 1/(1/decode + 1/model) (decode and model
share the same cores; on a GPU they do not, and the bound is the slower of the two). Table + JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw


def _photo(args: tuple[Path, int, int]) -> Path:
    root, i, jpegs = args
    rng = np.random.default_rng([0, i])
    yy, xx = np.mgrid[0:3000, 0:4000]
    base = np.stack([128 + 100 * np.sin(xx / rng.uniform(100, 400)), 128 + 100 * np.cos(yy / rng.uniform(100, 400)),
                     128 + 60 * np.sin((xx + yy) / rng.uniform(200, 600))], -1)
    img = Image.fromarray(np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(20):
        x, y, r = rng.integers(0, 4000), rng.integers(0, 3000), rng.integers(50, 700)
        d.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    if i < jpegs:
        exif = Image.Exif()
        exif[0x0112] = int(rng.choice([1, 3, 6, 8]))
        p = root / f"photo{i:03d}.jpg"
        img.save(p, quality=92, exif=exif)
    else:
        p = root / f"shot{i:03d}.png"
        img.resize((1155, 866)).save(p)
    return p


def make_folder(root: Path, jpegs: int, pngs: int, copies: int = 1) -> list[Path]:
    """The generated files (in parallel, each from its own seed), then `copies - 1` more of each."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        paths = list(pool.map(_photo, [(root, i, jpegs) for i in range(jpegs + pngs)]))
    for c in range(1, copies):
        for p in paths[:jpegs + pngs]:
            q = p.with_name(f"{p.stem}-{c}{p.suffix}")
            q.write_bytes(p.read_bytes() + c.to_bytes(4, "little"))  # after the image's end: decoders ignore it
            paths.append(q)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jpegs", type=int, default=60)
    ap.add_argument("--pngs", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--precision", default="auto", help="our side's precision (auto, fp32, bf16, int8, tower=format)")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each side, alternated; the best counts")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N: both sides' towers run there")
    ap.add_argument("--copies", type=int, default=1, help="each generated file this many times (a GPU needs more "
                                                         "files to time than 2 cores do)")
    ap.add_argument("--torch-threads", type=int, help="torch's CPU threads (default: torch's own)")
    ap.add_argument("--workers", type=int, help="our decode threads (default: the index's own choice)")
    ap.add_argument("--naive-files", type=int, help="time the naive loop on the first N files only (it is serial: "
                                                    "its rate holds; default all)")
    a = ap.parse_args()
    if a.torch_threads:
        torch.set_num_threads(a.torch_threads)
    on_gpu = a.device != "cpu"
    import open_clip

    import mmretrieval as mmr
    from mmretrieval.ingest.embed import Embedder

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "media").mkdir()
        paths = make_folder(tmp / "media", a.jpegs, a.pngs, a.copies)
        mb = sum(p.stat().st_size for p in paths) / 1e6
        torch.manual_seed(0)
        ckpt = tmp / "vitb32-random.pt"  # the same weights for both sides
        torch.save(open_clip.create_model("ViT-B-32").state_dict(), ckpt)
        model, _, pre = open_clip.create_model_and_transforms("ViT-B-32", pretrained=str(ckpt), device=a.device)
        model.eval()

        naive_paths = paths[:a.naive_files or len(paths)]

        def naive_loop() -> np.ndarray:
            out = []
            with torch.inference_mode():
                for s in range(0, len(naive_paths), a.batch_size):
                    x = torch.stack([pre(Image.open(p).convert("RGB")) for p in naive_paths[s:s + a.batch_size]])
                    out.append(torch.nn.functional.normalize(model.encode_image(x.to(a.device)), dim=-1).cpu().numpy())
            return np.concatenate(out)

        # Alternate the two sides, `--repeats` times each, and keep each side's best run: this 2-core VM's
        # timings wander by +-30 % between runs, and alternating exposes both sides to the same drift.
        naive_times, ours_times = [], []
        for r in range(a.repeats):
            t = time.perf_counter()
            naive = naive_loop()
            naive_times.append(time.perf_counter() - t)
            # ours, end to end (hashing, catalog and index included), into a fresh index each time
            eng = mmr.Engine(tmp / f"idx{r}", model=f"ViT-B-32:{ckpt}", precision=a.precision, device=a.device)
            t = time.perf_counter()
            rep = eng.index([tmp / "media"], batch_size=a.batch_size, workers=a.workers)
            ours_times.append(time.perf_counter() - t)
        naive_s, ours_s = min(naive_times) * len(paths) / len(naive_paths), min(ours_times)  # naive: per all files
        precision = eng.stats()["space"]["precision"]
        ids = {h.path: h.id for h in eng.search("x", k=len(paths), types=["image"])}
        ours = eng.store.vectors.reconstruct(np.array([ids[str(p)] for p in naive_paths]))
        # the naive loop ignores EXIF orientation: compare only unrotated files for parity
        upright = [i for i, p in enumerate(naive_paths)
                   if p.suffix == ".png" or Image.open(p).getexif().get(0x0112, 1) == 1]
        cos = np.einsum("ij,ij->i", ours[upright], naive[upright])

        # bounds, same run: the model alone at our precision, as the index runs it, and our decode path alone
        from concurrent.futures import ThreadPoolExecutor

        enc = eng.space.image  # the tower as the index runs it: torch (fp32/bf16) or ONNX Runtime (int8)
        x = list(torch.randn(a.batch_size, 3, 224, 224))
        cores = enc.per_core()  # int8: each decode thread encodes its own images, one at a time

        reps = 20 if on_gpu else 2  # a GPU runs a batch in milliseconds

        def model_alone(batched: bool) -> float:
            t = time.perf_counter()
            for _ in range(reps):
                if batched:
                    enc.encode(x, batch_size=a.batch_size)
                else:
                    with ThreadPoolExecutor(cores) as pool:
                        list(pool.map(lambda item: enc.encode_here([item]), x))
            return reps * a.batch_size / (time.perf_counter() - t)

        enc.encode(x[:2])
        batched_rate = model_alone(True)
        model_rate = model_alone(False) if cores else batched_rate
        cpus = os.cpu_count() or 1
        with ThreadPoolExecutor(cpus) as pool:
            t = time.perf_counter()
            list(pool.map(lambda p: enc.preprocess(enc.load(p)), paths))
            decode_rate = len(paths) / (time.perf_counter() - t)
        bound = min(decode_rate, model_rate) if on_gpu else 1 / (1 / decode_rate + 1 / model_rate)
    rows = {"files": len(paths), "MB": round(mb, 1), "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "device": torch.cuda.get_device_name(a.device) if on_gpu else "cpu", "precision": precision,
            "workers": a.workers or Embedder(eng.space).workers,
            "naive_img_per_s": len(paths) / naive_s, "ours_img_per_s": rep.items_added / ours_s,
            "ratio_vs_naive": naive_s / ours_s * rep.items_added / len(paths),
            "model_only_img_per_s": model_rate, "model_only_batched_img_per_s": batched_rate,
            "model_per_core": cores, "decode_only_img_per_s": decode_rate, "serial_bound_img_per_s": bound,
            "share_of_bound": (rep.items_added / ours_s) / bound, "min_cosine_vs_naive_upright": float(cos.min()),
            "naive_runs_s": [round(t, 2) for t in naive_times], "ours_runs_s": [round(t, 2) for t in ours_times]}
    print(f"{len(paths)} files ({a.jpegs} 12-MP JPEGs, {a.pngs} 1-MP PNGs, x{a.copies}, {mb:.0f} MB), ViT-B-32, naive "
          f"fp32 vs ours {rows['precision']}, on {rows['device']}, {rows['threads']} torch threads, {rows['cpus']} cpus")
    for k in ("naive_img_per_s", "ours_img_per_s", "ratio_vs_naive", "model_only_img_per_s",
              "model_only_batched_img_per_s", "decode_only_img_per_s",
              "serial_bound_img_per_s", "share_of_bound", "min_cosine_vs_naive_upright"):
        print(f"  {k:<30}{rows[k]:10.4f}")
    print(json.dumps({"bench": "index_images", **rows}))


if __name__ == "__main__":
    main()
