"""Full-precision copies of a compressed index's vectors, beside it on disk, to re-score its candidates exactly.

An SQ8 or PQ index ranks by approximate scores: without a second stage IVF-PQ stays near 0.65 recall@10 even
probing every list. Like faiss's `IndexRefine` (which needs sequential ids; these indexes hold catalog ids) and
the oversampling-with-rescoring of vector databases, the index fetches `factor` × k candidates and re-scores them
with these rows. They are float16 (cosines within ~1e-3 of float32's on unit vectors, half the disk) in a `.npy`
read where a query needs a row (`RowFile`): it costs disk and page cache, not resident memory.

Files beside a base `vectors.N.faiss`: `vectors.N.faiss.rows.npy` (float16 [n, dim], sorted by id) and
`vectors.N.faiss.ids.npz` (the sorted ids and the tuned factor). Rows added since the base was written live in
memory (the deltas that the store replays hold them in float32 anyway) until the next base write.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import MMRError
from .segments import atomic_write

ROWS_SUFFIX = ".rows.npy"
IDS_SUFFIX = ".ids.npz"
DEFAULT_FACTOR = 8       # candidates fetched per hit asked for, until tuning says otherwise
MAX_CANDIDATES = 65_536  # a large k re-scores at most this many candidates
COPY_ROWS = 131_072      # rows copied at a time when a new file is written (256 MB at 1,024 dims)


class RowFile:
    """The rows of a float16 `.npy` file read with `pread`, a run of consecutive rows per call. Not memory-mapped:
    mapping it, 200 queries at 1 M items (4,000 rows read) left 950 MB of the 1 GB file mapped into the process,
    `MADV_RANDOM` or not, since the kernel maps the page cache around each fault; read this way the process
    holds only what it asked for, and the page cache stays shared and reclaimable."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb")
        version = np.lib.format.read_magic(self._file)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(self._file)
        if fortran or dtype != np.float16 or len(shape) != 2:
            raise ValueError(f"expected float16 rows [n, dim], got {dtype} {shape}")
        self.shape, self._offset = shape, self._file.tell()
        self._row = shape[1] * 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, pos: np.ndarray) -> np.ndarray:
        """Rows at ascending positions `pos`."""
        pos = np.asarray(pos, np.int64).reshape(-1)
        out = np.empty((pos.size, self.shape[1]), np.float16)
        if not pos.size:
            return out
        breaks = np.flatnonzero(np.diff(pos) != 1) + 1
        fd = self._file.fileno()
        for lo, hi in zip(np.concatenate([[0], breaks]), np.concatenate([breaks, [pos.size]])):
            want = (hi - lo) * self._row
            raw = os.pread(fd, want, self._offset + int(pos[lo]) * self._row)
            if len(raw) != want:
                raise OSError(f"{self._file.name} is shorter than its header says")
            out[lo:hi] = np.frombuffer(raw, np.float16).reshape(hi - lo, self.shape[1])
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self[np.arange(len(self))]
        return whole if dtype is None else whole.astype(dtype)


def companions(base: Path) -> list[Path]:
    """The files an exact-rows store keeps beside a base file."""
    return [base.with_name(base.name + ROWS_SUFFIX), base.with_name(base.name + IDS_SUFFIX)]


def companions_bytes(base: Path) -> int:
    """What the exact rows beside a base file take on disk (0 for an index that keeps none)."""
    return sum(p.stat().st_size for p in companions(base) if p.exists())


class ExactRows:
    """Exact (float16) vectors by id: a sorted base (in memory, or read from its file) plus rows added since."""

    def __init__(self, dim: int, ids: np.ndarray | None = None, rows: np.ndarray | None = None,
                 factor: int = DEFAULT_FACTOR) -> None:
        self.dim = dim
        self.factor = int(factor)
        if ids is None:
            ids, rows = np.empty(0, np.int64), np.empty((0, dim), np.float16)
        ids = np.asarray(ids, np.int64)
        if ids.size > 1 and not (np.diff(ids) > 0).all():
            order = np.argsort(ids, kind="stable")
            ids, rows = ids[order], np.asarray(rows)[order]
        self._ids, self._rows = ids, rows
        self._new: dict[int, np.ndarray] = {}  # id -> float16 row, added since the base

    @classmethod
    def from_vectors(cls, ids: np.ndarray, vecs: np.ndarray, factor: int = DEFAULT_FACTOR) -> "ExactRows":
        return cls(vecs.shape[1], ids, np.asarray(vecs, np.float16), factor)

    def __len__(self) -> int:
        return int(self._ids.size) + len(self._new)

    @property
    def on_disk(self) -> bool:
        """Are the base's rows read from their file where asked for (not held in memory)?"""
        return isinstance(self._rows, (RowFile, np.memmap))

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        half = np.asarray(vecs, np.float16)
        for i, row in zip(np.asarray(ids, np.int64).tolist(), half):
            self._new[i] = row

    def forget(self, ids: np.ndarray) -> None:
        """Rows of removed ids added since the base (the base's rows stay until it is rewritten: never asked for)."""
        if self._new:
            for i in np.asarray(ids, np.int64).tolist():
                self._new.pop(i, None)

    def missing(self, ids: np.ndarray) -> np.ndarray:
        """Those of `ids` it holds no row for (none, unless its files were changed from outside)."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        held = np.isin(ids, self._ids, assume_unique=False)
        if self._new:
            held |= np.isin(ids, np.fromiter(self._new, np.int64, len(self._new)))
        return ids[~held]

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """float32 rows of `ids`, in that order; raises for an id it does not hold."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        out = np.empty((ids.size, self.dim), np.float32)
        if not ids.size:
            return out
        fresh = np.array([i in self._new for i in ids.tolist()], bool) if self._new else np.zeros(ids.size, bool)
        for k in np.flatnonzero(fresh):
            out[k] = self._new[int(ids[k])]
        old = np.flatnonzero(~fresh)
        if old.size:
            pos = np.searchsorted(self._ids, ids[old])
            pos_ok = np.minimum(pos, max(self._ids.size - 1, 0))
            bad = np.ones(old.size, bool) if not self._ids.size else self._ids[pos_ok] != ids[old]
            if bad.any():
                missing = ids[old][bad]
                raise MMRError(f"the exact vectors of ids {missing[:5].tolist()} are missing; "
                               f"run `mmr check --repair` to restore them")
            order = np.argsort(pos_ok, kind="stable")  # read the file front to back
            out[old[order]] = self._rows[pos_ok[order]]
        return out

    def rescore(self, queries: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-`k` among each query's candidate `ids` (-1 = none): scores and ids, ties by id."""
        nq = queries.shape[0]
        out_s = np.full((nq, k), -np.inf, np.float32)
        out_i = np.full((nq, k), -1, np.int64)
        for q in range(nq):
            cand = ids[q][ids[q] >= 0]
            if not cand.size:
                continue
            cand = np.unique(cand)
            sims = self.rows(cand) @ queries[q]
            order = np.lexsort((cand, -sims))[:k]
            out_s[q, :order.size] = sims[order]
            out_i[q, :order.size] = cand[order]
        return out_s, out_i

    def candidates(self, k: int, total: int) -> int:
        """How many candidates a search for `k` hits fetches to re-score."""
        return int(min(max(total, 1), max(k, min(k * self.factor, MAX_CANDIDATES))))

    def save(self, base: Path, live: np.ndarray) -> None:
        """Write the rows of the `live` ids (the index's, sorted here) beside `base`, atomically file by file; the
        catalog names `base` only after both are written, so a crash leaves the committed state whole."""
        live = np.unique(np.asarray(live, np.int64))
        rows_path, ids_path = companions(base)

        def write_rows(tmp: str) -> None:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(live.size, self.dim))
            for s in range(0, live.size, COPY_ROWS):
                out[s:s + COPY_ROWS] = self.rows(live[s:s + COPY_ROWS])
            out.flush()
            del out

        def write_ids(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, ids=live, factor=np.array(self.factor, np.int64), dim=np.array(self.dim, np.int64))

        atomic_write(rows_path, write_rows)
        atomic_write(ids_path, write_ids)

    @classmethod
    def load(cls, base: Path) -> "ExactRows | None":
        """The rows kept beside `base`, read from the file where asked for; None when it has none (an uncompressed
        index)."""
        rows_path, ids_path = companions(base)
        if not ids_path.exists():
            return None
        try:
            with np.load(ids_path, allow_pickle=False) as z:
                ids, factor, dim = z["ids"], int(z["factor"]), int(z["dim"])
            rows = RowFile(rows_path)
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError) as e:
            raise MMRError(f"cannot read the exact vectors beside {base}: {e}") from None
        if rows.shape != (ids.size, dim):
            raise MMRError(f"the exact vectors beside {base} hold {rows.shape} rows for {ids.size} ids of {dim} dims")
        return cls(dim, ids, rows, factor)
