"""Plain text and light markup (Markdown, reStructuredText): the whole file is one run of text, in whatever
encoding it was written."""
from __future__ import annotations

import codecs
import re
from typing import Iterator

from ..errors import DecodeError
from .base import DocumentFormat, Limits, Text, register_format


def decode_text_bytes(data: bytes) -> tuple[str, str]:
    """Decode a text file whatever its encoding; returns (text, encoding). Binary data is refused.

    A byte-order mark decides; else strict UTF-8 (the common case, and ASCII); else the encoding that
    charset-normalizer finds most plausible (Big5, KOI8-R, Shift-JIS, windows-1255, UTF-16/32 without a BOM,
    ISO-2022-JP/KR, ...). ISO-2022 text is 7-bit, so it would pass as UTF-8 with escape codes in it: its
    escape sequences send it to detection."""
    # UTF-32 BOMs first: the UTF-32-LE BOM begins with the UTF-16-LE one.
    for bom, enc in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                     (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            try:
                return _checked(data.decode(enc)), enc
            except UnicodeDecodeError:
                break
    if not _ISO2022_ESCAPE.search(data[:65536]) and b"\x00" not in data[:4096]:
        try:
            return _checked(data.decode("utf-8")), "utf-8"
        except UnicodeDecodeError:
            pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None or best.encoding is None:
        raise DecodeError("binary data, not text (or text in an encoding none of the known ones fits)")
    enc = codecs.lookup(best.encoding).name
    return _checked(data.decode(enc, errors="replace")), enc


_ISO2022_ESCAPE = re.compile(rb"\x1b(?:\$[@AB()*+]|\([BJI]|\$\)C)")


def _checked(text: str) -> str:
    sample = text[:8192]
    if sample:
        bad = sum(1 for c in sample if (ord(c) < 32 and c not in "\t\n\r\f\v") or c == "\ufffd")
        if bad > 0.05 * len(sample):
            raise DecodeError("binary data, not text")
    return text


def _read(data: bytes | None, path: str, limits: Limits) -> Iterator[Text]:
    if data is None:
        with open(path, "rb") as f:
            data = f.read()
    text, encoding = decode_text_bytes(data)
    yield Text(text, {"encoding": encoding})


PLAIN = register_format(DocumentFormat(name="plain", extensions=frozenset({".txt", ".md", ".markdown", ".rst", ".text"}),
                                       read=_read))
