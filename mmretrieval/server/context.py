"""What every route shares: the engines that read (a request waits for no other unless as many are running as the
server has readers; none waits for a write), the engine that writes (made at the first write, sharing the readers'
loaded space), the server's settings, and the declared errors."""
# No `from __future__ import annotations`: FastAPI reads the route annotations at run time.

import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

from ..engine import Engine
from ..errors import MMRError, UsageError
from .schemas import ErrorBody

DESCRIPTIONS = {401: "missing or wrong token", 403: "not allowed: a write without a server token, or a path "
                "outside the folders the server may index", 404: "no such item, memory or file", 409: "the space's "
                "weights changed under the index", 413: "upload too large", 416: "range not satisfiable",
                422: "a bad argument (the error says which, and what is valid)", 423: "another process is "
                "writing to the index; retry later", 503: "the space's weights are missing"}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for these error statuses (and 401, which any route answers when the server has a token)."""
    return {c: {"model": ErrorBody, "description": DESCRIPTIONS[c]} for c in sorted({401, *codes})}


def resolved(path: str) -> Path:
    """A requested path, absolute and without links; one the OS cannot take (a NUL byte) is the request's fault."""
    try:
        return Path(os.path.expanduser(path)).resolve()
    except (ValueError, OSError) as e:
        raise UsageError(f"not a usable path: {path!r} ({e})") from None


class UploadTooLarge(MMRError):
    pass


class Forbidden(MMRError):
    """A write the server does not allow."""


DEFAULT_READERS = min(4, os.cpu_count() or 1)


def reader_count(size: Optional[int]) -> int:
    """How many readers a server keeps (None: the default); anything but a positive integer is refused."""
    if size is None:
        return DEFAULT_READERS
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise UsageError(f"readers must be a positive integer, got {size!r}")
    return size


class Readers:
    """The engines that read: one per request being answered at once, up to `size`, each with its own SQLite
    connection and view of the committed index (faiss and the towers release the GIL, so they run side by side),
    all using the first one's loaded space: one copy of the models. More are opened only when requests overlap;
    an IVF index's lists and exact rows are mapped or read from the same files, so a reader adds its ids and the
    commits made since the base, not another copy of the vectors (a flat or HNSW index is held by each)."""

    def __init__(self, first: Engine, size: Optional[int] = None) -> None:
        self.first, self.size = first, reader_count(size)
        self._free: queue.LifoQueue[Engine] = queue.LifoQueue()  # the warmest first
        self._free.put(first)
        self._opened = [first]
        self._lock = threading.Lock()

    @contextmanager
    def __call__(self) -> Iterator[Engine]:
        engine = self._take()
        try:
            yield engine
        finally:
            self._free.put(engine)

    def _take(self) -> Engine:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if len(self._opened) >= self.size:
                engine = None
            else:
                engine = Engine(self.first.path, readonly=True, device=self.first.device,
                                backend=self.first.backend, space_from=self.first)
                self._opened.append(engine)
        return engine if engine is not None else self._free.get()

    @property
    def opened(self) -> int:
        return len(self._opened)

    def close(self) -> None:
        """Close the readers opened beside the first (which lives as long as the app)."""
        with self._lock:
            extra, self._opened = self._opened[1:], self._opened[:1]
        for engine in extra:
            engine.close()
        self._free = queue.LifoQueue()
        self._free.put(self.first)


class Context:
    def __init__(self, index: str | os.PathLike, *, token: Optional[str], max_upload: int, device: str,
                 allow_index: Optional[list[str]] = None, readers: Optional[int] = None) -> None:
        self.engine = Engine(index, readonly=True, device=device)
        self.reader = Readers(self.engine, readers)  # `with c.reader() as engine:` around every read
        self.token, self.max_upload, self.device = token, max_upload, device
        self.roots = [Path(os.path.expanduser(r)).resolve() for r in allow_index or []]
        self.write_lock = threading.Lock()  # the writer: writes take turns, searches go on beside them
        self._writer: Optional[Engine] = None

    def writer(self) -> Engine:
        """The engine that writes (the caller holds `write_lock`). Writes need a token: without one, anything
        that reaches the port (another user, a web page's form) could change the index."""
        if not self.token:
            raise Forbidden("writes need a token: start the server with --token (or MMR_TOKEN) and send it")
        if self._writer is None:
            writer = Engine(self.engine.path, device=self.device)
            writer._space = self.engine.space  # one copy of the models (the same index, so the same space)
            self._writer = writer
        return self._writer

    def under_roots(self, path: str) -> Path:
        p = resolved(path)
        if not self.roots:
            raise Forbidden("this server indexes nothing: start it with --allow-index DIR")
        if not any(p == r or r in p.parents for r in self.roots):
            raise Forbidden(f"{p} is not under a folder this server may index "
                            f"({', '.join(map(str, self.roots))})")
        return p

    def close_writer(self) -> None:
        with self.write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
