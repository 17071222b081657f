"""What every route shares: the engine that reads (searches never wait for a write), the engine that writes
(made at the first write, sharing the reader's loaded space), the server's settings, and the declared errors."""
# No `from __future__ import annotations`: FastAPI reads the route annotations at run time.

import os
import threading
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


class Context:
    def __init__(self, index: str | os.PathLike, *, token: Optional[str], max_upload: int, device: str,
                 allow_index: Optional[list[str]] = None) -> None:
        self.engine = Engine(index, readonly=True, device=device)
        self.token, self.max_upload, self.device = token, max_upload, device
        self.roots = [Path(os.path.expanduser(r)).resolve() for r in allow_index or []]
        self.lock = threading.Lock()  # the reader: one SQLite connection, one model; requests take turns
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
