"""Members of a zip container (DOCX, ODT, EPUB) read with a bound on what they may inflate to: a zip bomb is
refused with a reason, never decompressed into memory."""
from __future__ import annotations

import io
import os
import zipfile
import xml.etree.ElementTree as ET

from ..errors import DecodeError


# One member read whole (a picture), and one XML part parsed whole (its tree costs ~10x its bytes): a 32 MB
# document.xml is some five million words.
MAX_MEMBER = 64 << 20
MAX_XML = 32 << 20


class Container:
    """A zip read member by member, each at most `budget` bytes in all (what the header claims is not trusted:
    inflation stops at the budget)."""

    def __init__(self, data: bytes | None, path: str, budget: int, kind: str) -> None:
        self.kind = kind
        self.budget = budget
        self.limit = budget
        try:
            self.zip = zipfile.ZipFile(io.BytesIO(data) if data is not None else os.fspath(path))
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise DecodeError(f"damaged {kind} (not a readable zip container: {e})") from None
        self.names = set(self.zip.namelist())

    def __enter__(self) -> "Container":
        return self

    def __exit__(self, *exc: object) -> None:
        self.zip.close()

    def has(self, name: str) -> bool:
        return name in self.names

    def read(self, name: str, cap: int = MAX_MEMBER) -> bytes:
        """A member's bytes; DecodeError when it is missing, damaged, larger than `cap` or than what is left of
        the container's budget."""
        if name not in self.names:
            raise DecodeError(f"damaged {self.kind}: {name} is missing")
        out = bytearray()
        try:
            with self.zip.open(name) as f:
                while chunk := f.read(1 << 20):
                    out += chunk
                    if len(out) > min(cap, self.budget):
                        what = (f"{name} inflates to more than {cap >> 20} MB" if cap < self.budget else
                                f"it inflates to more than {self.limit >> 20} MB")
                        raise DecodeError(f"{self.kind}: {what} (a zip bomb, or too large to index)")
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError, ValueError) as e:
            raise DecodeError(f"damaged {self.kind}: cannot read {name} ({e})") from None
        self.budget -= len(out)
        return bytes(out)

    def xml(self, name: str) -> ET.Element:
        try:
            return ET.fromstring(self.read(name, MAX_XML))
        except ET.ParseError as e:
            raise DecodeError(f"damaged {self.kind}: {name} is not well-formed XML ({e})") from None


def local(tag: str) -> str:
    """'{namespace}p' -> 'p'."""
    return tag.rsplit("}", 1)[-1]
