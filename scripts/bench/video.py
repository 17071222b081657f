"""Video: what indexing a video costs beside decoding every frame of it, on this machine.

Makes H.264 videos (AAC sound) with shots of 2-12 s and motion: 1080p as x264 leaves them by default (a key frame
at each cut, one at least every 250 frames), as a phone writes them (a key frame a second) and with x264's cut
detection off (the sampler must find the cuts), and 4K. For each it measures
(1) decoding every frame (PyAV, threaded: the baseline any frame-by-frame indexer pays), (2) the sampler alone
(`video.frames`: key frames, changed stretches), (3) `Engine.index` with the shipped `tiny` space (scenes, sound,
subtitles, commit), and reports hours of video per minute of indexing, items and bytes per hour of video.

Run: `python scripts/bench/video.py` (~6 min on 2 cores). Prints a table and one JSON line.
`python scripts/bench/video.py --files A.mp4 B.mkv ...` measures those videos instead (real footage).
"""
from __future__ import annotations

import argparse
import fractions
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import mmretrieval as mmr  # noqa: E402
from mmretrieval.video import frames  # noqa: E402
from mmretrieval.video.container import source  # noqa: E402


def make_video(path: Path, width: int, height: int, seconds: float, fps: int = 30, seed: int = 0,
               x264: dict[str, str] | None = None) -> dict:
    """Shots of 2-12 s: a textured coloured background with a moving gradient and a moving block."""
    rng = np.random.default_rng(seed)
    cuts, t = [], 0.0
    while t < seconds:
        t += float(rng.uniform(2, 12))
        cuts.append(min(t, seconds))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        v.options = x264 or {}
        a = out.add_stream("aac", rate=48000)
        a.layout = "stereo"
        shot, base = 0, rng.uniform(30, 220, 3)
        n = int(seconds * fps)
        for i in range(n):
            t = i / fps
            if t >= cuts[shot]:
                shot, base = shot + 1, rng.uniform(30, 220, 3)
            g = (np.sin(xx / width * 6 + t) * 20 + np.sin(yy / height * 40 + 3 * shot) * 15).astype(np.float32)
            img = np.empty((height, width, 3), np.uint8)
            for c in range(3):
                img[..., c] = np.clip(base[c] + g, 0, 255)
            x0 = int((0.2 + 0.6 * ((t * 0.1) % 1)) * width)
            img[height // 3: height // 3 + height // 5, x0: x0 + width // 8] = 255 - base.astype(np.uint8)
            for p in v.encode(av.VideoFrame.from_ndarray(img, "rgb24")):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        sr, chunk = 48000, 1024
        total = int(seconds * sr)
        for i0 in range(0, total, chunk):
            tt = (np.arange(i0, min(total, i0 + chunk)) / sr).astype(np.float32)
            x = (0.2 * np.sin(2 * np.pi * (220 + 40 * np.floor(tt / 3)) * tt)).astype(np.float32)
            fr = av.AudioFrame.from_ndarray(np.stack([x, x]), format="fltp", layout="stereo")
            fr.sample_rate, fr.pts, fr.time_base = sr, i0, fractions.Fraction(1, sr)
            for p in a.encode(fr):
                out.mux(p)
        for p in a.encode():
            out.mux(p)
    return {"cuts": len(cuts) - 1, "frames": n}


def decode_all(path: Path) -> tuple[float, int]:
    t = time.perf_counter()
    n = 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for _ in c.decode(s):
            n += 1
    return time.perf_counter() - t, n


def sample(path: Path) -> tuple[float, frames.Sampling, int]:
    t = time.perf_counter()
    info = frames.Sampling()
    n = sum(1 for _ in frames.samples(lambda: source(None, str(path)), info))
    return time.perf_counter() - t, info, n


def index(path: Path, work: Path) -> tuple[float, dict, int]:
    folder = work / f"in-{path.stem}"
    folder.mkdir()
    os.link(path, folder / path.name)
    idx = work / f"idx-{path.stem}"
    with mmr.Engine(idx, model="tiny") as eng:
        eng.prepare()  # the towers load once per run, not per video: what a folder of videos pays for each
        t = time.perf_counter()
        rep = eng.index([folder])
        sec = time.perf_counter() - t
    size = sum(f.stat().st_size for f in idx.iterdir() if f.is_file() and not f.name.endswith((".log", "-shm", "-wal")))
    return sec, dict(rep.added), size


def measure(name: str, path: Path, work: Path, cuts: int | None = None) -> dict:
    with av.open(str(path)) as c:
        seconds = float(c.duration / 1e6) if c.duration else 0.0
        v = c.streams.video[0]
        size = f"{v.codec_context.width}x{v.codec_context.height} {v.codec_context.name}"
    full, n = decode_all(path)
    samp, info, kept = sample(path)
    took, added, stored = index(path, work)
    hours = seconds / 3600
    return {"video": name, "picture": size, "seconds": round(seconds, 1), "frames": n, "cuts": cuts,
            "decode_every_frame_s": round(full, 2), "sampler_s": round(samp, 2),
            "frames_decoded_by_sampler": info.decoded, "key_frames": info.key_frames,
            "cuts_from_packets": info.cuts_from_packets, "samples": kept,
            "index_s": round(took, 2), "index_vs_decode_every_frame": round(took / full, 3),
            "hours_per_minute": round(hours / (took / 60), 2),
            "scenes": added.get("image", 0), "items": sum(added.values()),
            "items_per_hour": round(sum(added.values()) / hours), "bytes_per_hour": round(stored / hours)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="+", type=Path, help="measure these videos instead of generated ones")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mmr-bench-video-"))
    try:
        rows = []
        if args.files:
            for i, f in enumerate(args.files):
                path = work / f"f{i}{f.suffix}"
                shutil.copyfile(f, path)
                rows.append(measure(f.name, path, work))
        else:
            # x264 as cameras and editors leave it (a key frame at each cut, one at least every 250 frames), as a
            # phone writes (a key frame every second), and with cut detection off (ultrafast: cuts the sampler must
            # find).
            variants = {"1080p, x264 veryfast": (1920, 1080, 60.0, {"preset": "veryfast"}),
                        "1080p, key frame every 1 s": (1920, 1080, 60.0, {"preset": "veryfast", "g": "30"}),
                        "1080p, x264 ultrafast (no cut detection)": (1920, 1080, 60.0, {"preset": "ultrafast"}),
                        "4K, x264 veryfast": (3840, 2160, 20.0, {"preset": "veryfast"})}
            for i, (name, (w, h, sec, opts)) in enumerate(variants.items()):
                path = work / f"v{i}.mp4"
                made = make_video(path, w, h, sec, x264=opts)
                rows.append(measure(name, path, work, made["cuts"]))
        print(f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, PyAV {av.__version__}")
        print("| video | picture | length | cuts | decode every frame | sampler (frames decoded; cuts from packets) "
              "| index (tiny) | hours/min | scenes | items/hour | bytes/hour |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            print(f"| {r['video']} | {r['picture']} | {r['seconds']:.0f} s | {r['cuts'] if r['cuts'] is not None else '?'} "
                  f"| {r['decode_every_frame_s']} s ({r['frames']} frames) | {r['sampler_s']} s "
                  f"({r['frames_decoded_by_sampler']}; {r['cuts_from_packets']}) | {r['index_s']} s "
                  f"({r['index_vs_decode_every_frame']:.2f}x) | {r['hours_per_minute']} | {r['scenes']} | "
                  f"{r['items_per_hour']:,} | {r['bytes_per_hour'] / 1e6:.1f} MB |")
        print(json.dumps({"bench": "video", "rows": rows}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
