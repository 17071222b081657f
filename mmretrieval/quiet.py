"""Keep the decoders' chatter off the user's terminal.

libtiff, mpg123 (inside libsndfile) and FFmpeg write warnings straight to file descriptor 2 from C, in the
decode threads; Pillow and others add Python warnings and log records. None of it names the file it is
about, and a folder of odd files makes hundreds of lines. The command line runs indexing inside
`captured_output(log)`: all of that goes to a log file, while Python's own `sys.stderr` (progress bar,
error messages) still reaches the terminal. A problem with a file is reported once, in the index report.
"""
from __future__ import annotations

import io
import logging
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def captured_output(log_path: str | os.PathLike) -> Iterator[Path]:
    """Send fd 2, Python warnings and log records to `log_path` for the duration; the process's
    `sys.stderr` is rebound to the original terminal meanwhile."""
    path = Path(log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved_fd = os.dup(2)
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    terminal = io.TextIOWrapper(os.fdopen(os.dup(saved_fd), "wb", buffering=0), encoding="utf-8",
                                errors="backslashreplace", line_buffering=True, write_through=True)
    old_stderr = sys.stderr
    log_file = open(log_fd, "a", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)
    handler = logging.StreamHandler(log_file)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()

    def to_log(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        log_file.write(warnings.formatwarning(message, category, filename, lineno, line))

    os.dup2(log_fd, 2)
    sys.stderr = terminal
    root.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")  # every warning reaches the log, none is lost to "once"
            warnings.showwarning = to_log  # catch_warnings puts the old one back
            yield path
    finally:
        root.removeHandler(handler)
        sys.stderr = old_stderr
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
        log_file.close()
        os.close(log_fd)
        terminal.close()


def count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0
