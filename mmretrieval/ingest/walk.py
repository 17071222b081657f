"""Walk folders and say what each file is. Nothing here decodes; errors become skip reasons."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Iterable, Iterator

from ..modalities import get_modality, modality_of  # which registered modality claims a file

@dataclass(frozen=True)
class FileEntry:
    path: str          # absolute, normalised
    modality: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Ignored:
    """A regular file of no modality this tool indexes (counted by extension in the report)."""

    path: str
    ext: str


@dataclass(frozen=True)
class WalkError:
    path: str
    reason: str


def walk(roots: Iterable[str | os.PathLike]) -> Iterator[FileEntry | WalkError | Ignored]:
    """Yield every file of a known modality under `roots`, in sorted order; follows symlinks once.

    Symlinked folders are followed, but a folder already visited (by its real path) is not entered
    again, so symlink loops end. Unreadable folders and files are yielded as `WalkError`, regular files
    of no known modality as `Ignored`.
    """
    seen_dirs: set[tuple[int, int]] = set()
    for root in roots:
        root = os.path.abspath(os.path.expanduser(os.fspath(root)))
        try:
            st = os.stat(root)
        except OSError as e:
            yield WalkError(root, f"cannot access: {e.strerror}")
            continue
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_dir(root, seen_dirs)
        else:
            entry = _entry(root, st)
            if entry is not None:
                yield entry
            else:
                yield WalkError(root, f"not a supported file type ({_ext(root) or 'no extension'})")


def _entry(path: str, st: os.stat_result, names: list[str] | None = None) -> FileEntry | None:
    mod = modality_of(path)
    if mod is None or not stat.S_ISREG(st.st_mode):
        return None
    mtime = st.st_mtime_ns
    companions = get_modality(mod).companions
    if companions is not None:  # files read with it (a video's subtitles): the newest change counts
        for other in companions(path, names):
            try:
                mtime = max(mtime, os.stat(other).st_mtime_ns)
            except OSError:
                pass
    return FileEntry(path=path, modality=mod, size=st.st_size, mtime_ns=mtime)


def _walk_dir(d: str, seen: set[tuple[int, int]]) -> Iterator[FileEntry | WalkError]:
    try:
        st = os.stat(d)
    except OSError as e:
        yield WalkError(d, f"cannot access folder: {e.strerror}")
        return
    key = (st.st_dev, st.st_ino)
    if key in seen:
        return  # symlink loop or second link to a folder already indexed
    seen.add(key)
    try:
        with os.scandir(d) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        yield WalkError(d, f"cannot list folder: {e.strerror}")
        return
    names = [e.name for e in entries]
    for e in entries:
        if e.name.startswith("."):
            continue  # hidden files and folders (.git, .thumbnails, our own index) are not media
        path = os.path.join(d, e.name)
        try:
            est = os.stat(path)  # follows symlinks
        except OSError as err:
            if modality_of(path) is not None or e.is_dir(follow_symlinks=False):
                yield WalkError(path, f"cannot access: {err.strerror}")
            continue
        if stat.S_ISDIR(est.st_mode):
            yield from _walk_dir(path, seen)
        else:
            entry = _entry(path, est, names)
            if entry is not None:
                yield entry
            elif stat.S_ISREG(est.st_mode):
                yield Ignored(path, _ext(path))


def _ext(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def under(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def under_any(path: str, roots: set[str]) -> bool:
    """`under` for many roots at once: walks up the path's folders (its depth), not along the roots."""
    while True:
        if path in roots:
            return True
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent


def normalise_roots(roots: Iterable[str | os.PathLike]) -> list[str]:
    return [os.path.abspath(os.path.expanduser(os.fspath(r))) for r in roots]

