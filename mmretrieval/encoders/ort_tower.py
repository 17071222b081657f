"""An exported tower under ONNX Runtime, read back from the cache without torch.

`onnx_runtime` exports and verifies towers (it needs torch and the model); this module only runs what it
wrote, so a one-off query can encode its text with numpy and ONNX Runtime alone (issue #37: importing torch
and open_clip was ~4 of a 6 s `mmr search`).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import SpaceError, UnsupportedPrecisionError

log = logging.getLogger(__name__)

# The input names of the built-in towers' exports, for records written before they named it.
INPUTS = {"text": "tokens", "image": "pixels", "audio": "features"}


# PER_CORE_MIN_TOKENS (in `arrays`): from that many tokens, dynamic int8 runs items one per core.
# ...and on at most this many cores: one per core, each core reads all the weights for every item (ViT-B-32's
# int8 image tower: 88 MB, ~2.6 GB/s a core here), where a batch reads them once for all its items; beyond it
# cores would contend for memory bandwidth (measured here on 2 only), so batches over every core stay.
PER_CORE_MAX_CORES = 4


def default_threads() -> int:
    """Threads a session computes on: torch's count where torch is loaded (the towers beside it share the
    cores the same way), else the cores this process may run on."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.get_num_threads()
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class OrtTower:
    """One exported tower: ``x -> un-normalised vectors`` (numpy in, numpy out).

    Dynamic int8 (ONNX Runtime's) scales a call's activations by their range over the whole call, so an
    item's vector would depend on its batch mates. One item runs the plain graph (`path`, its fused kernels:
    a one-text query 3.5 ms where the rewritten graph took 4.6); a batch runs `batched`, the same graph with
    the range taken per item (`onnx_int8.scales_per_item`), which gives each item the vector it gets alone
    (checked when exported). `equal_shapes`: padding is part of an item's range, so texts batch only with
    texts of their length. `per_item`: an int8 tower without a batched graph runs a batch item by item.
    `on_this_thread`: items one at a time on the calling thread, for pipelines that give each core its own
    files to decode and encode (`ingest.embed`)."""

    def __init__(self, path: Path, input_name: str, threads: int | None = None, per_item: bool = False,
                 lazy: bool = False, batched: Path | None = None, checksums: dict[Path, int] | None = None,
                 record: Path | None = None) -> None:
        """`lazy`: open the sessions at their first call (0.2-1.3 s for ViT-B-32's towers), so a process that
        searches by text never pays for the image tower's; else both now (a damaged file fails here).
        `checksums`: CRC-32 of each graph file as exported, checked as it is first opened (a file damaged in
        place gave wrong vectors silently); on a mismatch the file and `record` (the export's record) are
        removed, so the next load exports the tower again."""
        self.path = Path(path)
        self.batched = Path(batched) if batched is not None else None
        self.input_name = input_name
        self.per_item = per_item
        self.threads = int(threads or default_threads())
        self._unchecked = dict(checksums or {})
        self._record = record
        self._sessions: dict[Path | tuple[Path, int], Any] = {}
        self._opening = threading.Lock()
        self._cores: ThreadPoolExecutor | None = None
        if not lazy:
            for graph in (self.path, self.batched):
                if graph is not None:
                    self._open(graph)

    @property
    def equal_shapes(self) -> bool:
        return self.batched is not None

    @property
    def per_core(self) -> int:
        """Cores to run items on one by one (`on_this_thread`, `across_cores`), 0 for none: dynamic int8, whose
        items take their own scales (an item alone gets its batch vector), on up to `PER_CORE_MAX_CORES`."""
        return self.threads if (self.per_item or self.batched is not None) and self.threads <= PER_CORE_MAX_CORES else 0

    @property
    def session(self) -> Any:
        """The plain graph's session (one item, or any batch of an fp32 or static int8 tower)."""
        return self._sessions.get(self.path) or self._open(self.path)

    def open(self) -> None:
        """Open the plain session now rather than at the first call (see `Encoder.warm_up`): queries are one
        item; an index run opens what it uses (the batched graph, or the one-thread session of `per_core`) at
        its first batch."""
        self.session  # noqa: B018

    def _open(self, path: Path, threads: int | None = None) -> Any:
        import onnxruntime as ort

        key = path if threads is None else (path, threads)
        with self._opening:
            if key not in self._sessions:
                so = ort.SessionOptions()
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                so.log_severity_level = 3
                so.intra_op_num_threads = threads or self.threads
                so.inter_op_num_threads = 1
                # A session's pool spins on the cores for a while after its run, and the next session's run (or
                # search) fought it: alternating two towers (an image then a text query; text passages then
                # photos while indexing) doubled both on 2 cores (ViT-B-32 image int8 18 -> 35 ms, fp32 text
                # 8.3 -> 16 ms). Spinning stops at the end of each run instead: 18 and 8.6, the same as alone.
                # (One global pool did as well, but once set ONNX Runtime refuses every session with a pool of
                # its own in the process, its static quantiser's and other libraries' included.)
                so.add_session_config_entry("session.force_spinning_stop", "1")
                files = [g for g in (path, weights_file(path)) if g in self._unchecked]
                if not files:
                    self._sessions[key] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
                    return self._sessions[key]
                # the checksums on other threads while the session is built (crc32 lets go of the GIL): ~0.1 s
                # for a 250 MB tower, hidden behind the session's own ~0.3 s
                with ThreadPoolExecutor(len(files)) as pool:
                    crcs = [pool.submit(checksum, g) for g in files]
                    try:
                        session, failure = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]), None
                    except Exception as e:  # onnxruntime's own types; a damaged graph is said as such below
                        session, failure = None, e
                if any(c.result() != self._unchecked[g] for g, c in zip(files, crcs)):
                    if self._record is not None:
                        self._record.unlink(missing_ok=True)
                        for g in files:
                            g.unlink(missing_ok=True)
                    raise SpaceError(f"the cached ONNX Runtime tower {path} is damaged (its checksum is not the "
                                     f"export's); it is exported again at the next start: run the command again")
                if failure is not None:
                    raise failure
                for g in files:
                    del self._unchecked[g]
                self._sessions[key] = session
            return self._sessions[key]

    def on_this_thread(self, x: np.ndarray) -> np.ndarray:
        """`x` item by item through the plain graph, on the calling thread only: a session without a pool of
        its own (one for all callers: ONNX Runtime runs a session from many threads at once)."""
        session = self._sessions.get((self.path, 1)) or self._open(self.path, threads=1)
        return np.concatenate([session.run(None, {self.input_name: x[i:i + 1]})[0] for i in range(len(x))])

    def across_cores(self, items: list[np.ndarray]) -> np.ndarray:
        """Items (each with its own shape) one by one, `threads` at a time, each on a thread of its own."""
        with self._opening:
            if self._cores is None:
                self._cores = ThreadPoolExecutor(self.threads, thread_name_prefix="mmr-core")
        return np.concatenate(list(self._cores.map(lambda x: self.on_this_thread(x[None]), items)))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if len(x) > 1 and self.batched is not None:
            session = self._sessions.get(self.batched) or self._open(self.batched)
            return session.run(None, {self.input_name: x})[0]
        if self.per_item and len(x) > 1:
            return np.concatenate([self.session.run(None, {self.input_name: x[i:i + 1]})[0] for i in range(len(x))])
        return self.session.run(None, {self.input_name: x})[0]


def checksum(path: Path) -> int:
    """CRC-32 of a file, read in blocks into one buffer (no copy of a 250 MB tower in memory)."""
    buf = bytearray(8 << 20)
    view, crc = memoryview(buf), 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            crc = zlib.crc32(view[:n], crc)
    return crc


def weights_file(graph: Path) -> Path:
    """Where an fp32 graph keeps its weights (ONNX external data): ONNX Runtime maps the file rather than
    copying it out of the graph's protobuf, which halved the load of ViT-B-32's text tower (0.73 s and 410 MB
    peak to 0.34 s and 213 MB on 2 Zen 4 cores)."""
    return graph.with_name(graph.name + ".data")


class ExportFiles(NamedTuple):
    """The files of one exported tower in the cache (`onnx_runtime.export_files` names its folder)."""

    folder: Path
    path: Path     # the graph (one item; any batch of an fp32 or static int8 tower)
    meta: Path     # its record, written last: the export was verified
    batched: Path  # dynamic int8: the graph with activations scaled per item
    fp32: Path     # what int8 is quantised from

    @classmethod
    def in_folder(cls, folder: Path, modality: str, precision: str) -> ExportFiles:
        return cls(folder, folder / f"{modality}.{precision}.onnx", folder / f"{modality}.{precision}.json",
                   folder / f"{modality}.{precision}.batched.onnx", folder / f"{modality}.fp32.onnx")


def read_export(f: ExportFiles, modality: str, threads: int | None = None) -> OrtTower | None:
    """The tower `onnx_runtime.load_tower` exported into `f` (no model needed), or None where it is not there
    (or was damaged there: its files are removed, to be exported again). An int8 export that was refused raises
    `UnsupportedPrecisionError`."""
    if importlib.util.find_spec("onnxruntime") is None:
        raise SpaceError("ONNX Runtime is not installed (pip install onnxruntime onnx); use --backend torch")
    record = json.loads(f.meta.read_text()) if f.meta.exists() else {}
    if record.get("refused"):
        raise UnsupportedPrecisionError(record["refused"])
    sizes = {f.path: record.get("bytes"), f.batched: record.get("batched_bytes"),
             weights_file(f.path): record.get("data_bytes")}
    if f.meta.exists() and all(g.exists() for g, size in sizes.items() if size):
        try:  # the files as exported (their sizes recorded): opened at first use; else now, to catch damage
            intact = all(g.stat().st_size == size for g, size in sizes.items() if size)
            sums = {f.path: record.get("crc32"), f.batched: record.get("batched_crc32"),
                    weights_file(f.path): record.get("data_crc32")}
            name = record.get("input") or INPUTS[modality]
            return OrtTower(f.path, name, threads, bool(record.get("per_item")), lazy=intact,
                            batched=f.batched if sizes[f.batched] else None, record=f.meta,
                            checksums={g: c for g, c in sums.items() if c is not None})
        except Exception as e:  # damaged in the cache (onnxruntime raises its own types): export again
            log.warning("cached ONNX tower %s does not load (%s); exporting it again", f.path, e)
    if f.meta.exists():  # damaged, or a file of the export gone: all of it again
        for stale in (f.meta, f.path, f.batched, f.fp32, weights_file(f.path), weights_file(f.fp32)):
            stale.unlink(missing_ok=True)
    return None


