"""What an update costs at scale: 100 files changed and 100 removed in an index of N items.

Measures the index work alone (encoding excluded: the changed files arrive as embedded files through
`Engine.add_embeddings`, as the commit part of `mmr index` receives them): seconds and bytes written to
disk, against the size of the vector file. The target of issue #13 is seconds, not a rebuild, and bytes
in proportion to the change (delta segments); also timed: opening a reader on base + deltas, and `compact`
(merging the deltas into a new base, the one write that is as large as the index). Run: `python scripts/bench/update.py --n 1000000` (prints a table and a JSON line).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import mmretrieval as mmr
from mmretrieval.ingest.embed import EmbeddedFile
from mmretrieval.ingest.walk import FileEntry

sys.path.insert(0, str(Path(__file__).parent))
from query import clustered  # noqa: E402


def written(root: Path, before: set[str]) -> int:
    """Bytes of the vector files (base or delta segments) written since `before` was listed."""
    return sum(f.stat().st_size for f in root.glob("vectors.*") if f.name not in before)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000, help="items in the index")
    ap.add_argument("--changed", type=int, default=100)
    ap.add_argument("--removed", type=int, default=100)
    ap.add_argument("--model", default="tiny", help="a space (only its dim and fingerprint are used)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        eng = mmr.Engine(tmp / "idx", model=a.model)
        dim, fp = eng.dim, eng.space.fingerprint
        rng = np.random.default_rng(0)
        x = clustered(a.n, dim, rng, rng.standard_normal((1000, dim)))
        per_file = 1
        files = [EmbeddedFile(FileEntry(f"/synthetic/{i:08d}.jpg", "image", 1, 1), f"{i:064x}", fp,
                              [({"width": 1, "height": 1}, None)], x[i:i + per_file]) for i in range(a.n)]
        t = time.perf_counter()
        eng.add_embeddings(files, checkpoint_seconds=1e9)
        fill_s = time.perf_counter() - t
        vec_bytes = eng.store.vectors_path.stat().st_size
        rows = []

        before = {f.name for f in eng.path.glob("vectors.*")}
        changed = [EmbeddedFile(FileEntry(f"/synthetic/{i:08d}.jpg", "image", 2, 2), f"{i + a.n:064x}", fp,
                                [({"width": 1, "height": 1}, None)], x[i + 1:i + 2]) for i in range(a.changed)]
        t = time.perf_counter()
        eng.add_embeddings(changed, checkpoint_seconds=1e9)
        rows.append(("change", a.changed, time.perf_counter() - t, written(eng.path, before)))

        before = {f.name for f in eng.path.glob("vectors.*")}
        t = time.perf_counter()
        # one call with the 100 paths, as `mmr remove` passes them
        removed = [f"/synthetic/{i:08d}.jpg" for i in range(a.n - a.removed, a.n)]
        n_removed = eng.remove(removed)
        rows.append(("remove", n_removed, time.perf_counter() - t, written(eng.path, before)))

        reader_s = time.perf_counter()
        reader = mmr.Engine(eng.path, readonly=True)  # a fresh reader: the base plus the two deltas
        reader_s = time.perf_counter() - reader_s
        assert reader.store.vectors.ntotal == eng.store.vectors.ntotal
        reader.close()

        before = {f.name for f in eng.path.glob("vectors.*")}
        t = time.perf_counter()
        eng.compact()
        rows.append(("compact", 0, time.perf_counter() - t, written(eng.path, before)))

        print(f"{a.n:,} items, dim {dim}, index {eng.store.vectors.description}; vector file "
              f"{vec_bytes / 2**20:.0f} MiB; fill {fill_s:.1f} s")
        print(f"{'update':<8}{'files':>7}{'seconds':>10}{'MiB written':>13}")
        for name, n, s, b in rows:
            print(f"{name:<8}{n:>7}{s:>10.2f}{b / 2**20:>13.1f}")
        print(f"opening a reader on base + {len(rows) - 1} deltas: {reader_s:.2f} s")
        print(json.dumps({"bench": "update", "n": a.n, "dim": dim, "index": eng.store.vectors.description,
                          "vector_file_MiB": vec_bytes / 2**20, "fill_s": fill_s, "reader_open_s": reader_s,
                          "rows": [{"update": r[0], "files": r[1], "seconds": r[2], "bytes_written": r[3]}
                                   for r in rows]}))
        eng.close()


if __name__ == "__main__":
    main()
