"""Audio indexing: `mmr index` (our pipeline) vs the naive loop, same random Wav2CLIP weights, same files.

    python scripts/bench/index_audio.py [--files 48] [--precision auto]

The folder: WAV and FLAC files at 8, 16, 22.05, 44.1 and 48 kHz, mono and stereo, 1.5 s to 60 s long
(tones, chirps and noise), generated. The tower is the default space's: Wav2CLIP (ResNet-18 on a
spectrogram, 5-s windows) with random weights saved to a file, so both sides pay the real cost.
The naive loop is what one writes first: per file, librosa load at 16 kHz, cut into the tower's
windows, the tower in fp32 on that file's windows. Ours: `Engine.index` end to end (hashing, catalog
and index included) at the precision it chooses. Also measured in the same run: the tower alone at
our precision and in fp32, and decoding alone. Prints a table and a JSON line.
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

import mmretrieval as mmr
from mmretrieval.encoders.waves import windows

RATES = (8000, 16000, 22050, 44100, 48000)
LENGTHS = (1.5, 4.0, 10.0, 30.0, 60.0)


def make_folder(root: Path, n: int) -> list[Path]:
    import soundfile as sf

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        sr, secs = RATES[i % len(RATES)], LENGTHS[(i // len(RATES)) % len(LENGTHS)]
        t = np.arange(int(sr * secs)) / sr
        f0 = rng.uniform(80, 2000)
        wave = 0.3 * np.sin(2 * np.pi * (f0 + rng.uniform(-50, 400) * t / secs) * t)
        wave += 0.05 * rng.standard_normal(t.size) * (1 + np.sin(2 * np.pi * rng.uniform(0.2, 3) * t))
        if i % 3 == 0:
            wave = np.stack([wave, np.roll(wave, 100)], axis=1)  # stereo
        p = root / f"clip{i:03d}.{'flac' if i % 2 else 'wav'}"
        sf.write(p, wave.astype(np.float32), sr)
        paths.append(p)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=48)
    ap.add_argument("--precision", default="auto")
    a = ap.parse_args()
    import librosa
    import open_clip

    from mmretrieval.encoders.wav2clip import Wav2CLIPTower

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "media").mkdir()
        paths = make_folder(tmp / "media", a.files)
        audio_s = sum(librosa.get_duration(path=p) for p in paths)
        torch.manual_seed(0)
        ckpt, wfile = tmp / "vitb32-random.pt", tmp / "wav2clip-random.pt"
        torch.save(open_clip.create_model("ViT-B-32").state_dict(), ckpt)
        tower = Wav2CLIPTower().eval()
        torch.save(tower.state_dict(), wfile)
        cfg = {"arch": "wav2clip", "sample_rate": 16000, "window_s": 5.0, "hop_s": 5.0, "embed_dim": 512}
        spec = mmr.SpaceSpec.from_dict({"name": "bench-wav2clip", "clip": {"model": "ViT-B-32", "pretrained": str(ckpt)},
                                        "audio": {"config": cfg, "weights": str(wfile)}, "metric": "cosine"})

        # naive loop: one file at a time, fp32
        t = time.perf_counter()
        naive: dict[tuple[str, float], np.ndarray] = {}
        with torch.inference_mode():
            for p in paths:
                wave, _ = librosa.load(p, sr=16000, mono=True)
                wins = windows(wave, 16000, 5.0, 5.0)
                by_len: dict[int, list] = {}
                for w in wins:
                    by_len.setdefault(w.samples.size, []).append(w)
                for group in by_len.values():
                    v = torch.nn.functional.normalize(tower(torch.from_numpy(np.stack([w.samples for w in group]))), dim=-1)
                    for w, row in zip(group, v.numpy()):
                        naive[(str(p), round(w.start, 3))] = row
        naive_s = time.perf_counter() - t

        # ours, end to end
        eng = mmr.Engine(tmp / "idx", model=spec, precision=a.precision)
        t = time.perf_counter()
        rep = eng.index([tmp / "media"])
        ours_s = time.perf_counter() - t
        precision = eng.stats()["space"]["precision"]
        assert not rep.skipped, rep.skipped
        cat = eng.store.catalog
        ids = cat.item_ids(("audio",))
        rows = cat.items(ids.tolist())
        vecs = eng.store.vectors.reconstruct(ids)
        cos = [float(vecs[i] @ naive[(rows[int(j)].path, round(rows[int(j)].locator["start"], 3))])
               for i, j in enumerate(ids)]

        # bounds, same run: the tower alone (ours and fp32) on 5-s windows, and decoding alone
        x = torch.randn(16, 80000) * 0.1
        enc = eng.space.audio

        def tower_rate(fn) -> float:
            fn()
            t0 = time.perf_counter()
            fn()
            fn()
            return 32 / (time.perf_counter() - t0)

        with torch.inference_mode():
            ours_model = tower_rate(lambda: enc._encode_batch([w for w in x.numpy()]))
            fp32_model = tower_rate(lambda: tower(x))
        t = time.perf_counter()
        for p in paths:
            librosa.load(p, sr=16000, mono=True)
        decode_s = time.perf_counter() - t
    n = rep.items_added
    out = {"files": len(paths), "audio_seconds": round(audio_s, 1), "windows": n, "precision": precision,
           "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
           "naive_windows_per_s": len(naive) / naive_s, "ours_windows_per_s": n / ours_s,
           "ratio_vs_naive": (n / ours_s) / (len(naive) / naive_s),
           "naive_audio_x_realtime": audio_s / naive_s, "ours_audio_x_realtime": audio_s / ours_s,
           "tower_only_ours_windows_per_s": ours_model, "tower_only_fp32_windows_per_s": fp32_model,
           "decode_only_windows_per_s": n / decode_s, "min_cosine_vs_naive": min(cos)}
    print(f"{len(paths)} files, {audio_s:.0f} s of audio, {n} windows of 5 s; Wav2CLIP tower, naive fp32 vs ours "
          f"{precision}; {out['threads']} torch threads, {out['cpus']} cpus")
    for k in ("naive_windows_per_s", "ours_windows_per_s", "ratio_vs_naive", "naive_audio_x_realtime",
              "ours_audio_x_realtime", "tower_only_ours_windows_per_s", "tower_only_fp32_windows_per_s",
              "decode_only_windows_per_s", "min_cosine_vs_naive"):
        print(f"  {k:<32}{out[k]:10.4f}")
    print(json.dumps({"bench": "index_audio", **out}))


if __name__ == "__main__":
    main()
