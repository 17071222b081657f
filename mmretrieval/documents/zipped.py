"""Members of a zip container (DOCX, ODT, EPUB) read with a bound on what they may inflate to: a zip bomb is
refused with a reason, never decompressed into memory."""
from __future__ import annotations

import io
import os
import zipfile
import xml.etree.ElementTree as ET

from ..errors import DecodeError


class Container:
    """A zip read member by member, each at most `budget` bytes in all (what the header claims is not trusted:
    inflation stops at the budget)."""

    def __init__(self, data: bytes | None, path: str, budget: int, kind: str) -> None:
        self.kind = kind
        self.budget = budget
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

    def read(self, name: str) -> bytes:
        """A member's bytes; DecodeError when it is missing, damaged or would exceed what is left of the budget."""
        if name not in self.names:
            raise DecodeError(f"damaged {self.kind}: {name} is missing")
        out = bytearray()
        try:
            with self.zip.open(name) as f:
                while chunk := f.read(1 << 20):
                    out += chunk
                    if len(out) > self.budget:
                        raise DecodeError(f"{self.kind} inflates to more than {self.budget >> 20} MB "
                                          f"(a zip bomb, or too large to index)")
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError, ValueError) as e:
            raise DecodeError(f"damaged {self.kind}: cannot read {name} ({e})") from None
        self.budget -= len(out)
        return bytes(out)

    def xml(self, name: str) -> ET.Element:
        try:
            return ET.fromstring(self.read(name))
        except ET.ParseError as e:
            raise DecodeError(f"damaged {self.kind}: {name} is not well-formed XML ({e})") from None


def local(tag: str) -> str:
    """'{namespace}p' -> 'p'."""
    return tag.rsplit("}", 1)[-1]
