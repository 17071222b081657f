"""Text: documents split into passages that fit the text tower's context; each passage is an item."""
from __future__ import annotations

import codecs
import os
import re
from typing import Any, Iterator

from ..encoders.passages import split_passages
from ..errors import DecodeError, UsageError
from .base import DecodeContext, Item, Modality, Note, register_modality

EXTENSIONS = frozenset({".txt", ".md", ".markdown", ".rst", ".text"})

# A document gives at most this many passages (~150,000 words, a long book); text that is mostly very long
# lines (logs, dumps, minified data: machine-generated, without sentences) gives at most the smaller number.
MAX_PASSAGES = 2000
MAX_MACHINE_PASSAGES = 50
LONG_LINE = 2000
_SENTENCE_END = re.compile(r"[.!?\u3002\uff01\uff1f](?:\s|$)")


def passage_cap(text: str) -> tuple[int, str]:
    """How many passages of `text` to index, and why (for the report)."""
    cap = int(os.environ.get("MMR_MAX_PASSAGES") or MAX_PASSAGES)
    long_chars = sum(len(line) for line in text.splitlines() if len(line) > LONG_LINE)
    # Prose kept on one line (an exported paragraph) still ends a sentence every ~100 characters.
    if long_chars > 0.5 * len(text) and len(_SENTENCE_END.findall(text)) < len(text) / 500:
        return min(cap, MAX_MACHINE_PASSAGES), (f"machine-generated text (mostly lines over {LONG_LINE:,} "
                                                f"characters, no sentences)")
    return cap, "very long document"



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




def decode(data: bytes | None, path: str, ctx: DecodeContext) -> Iterator[Item | Note]:
    if data is None:
        with open(path, "rb") as f:
            data = f.read()
    text, encoding = decode_text_bytes(data)
    if not text.strip():
        raise DecodeError("no text (empty or whitespace only)")
    enc = ctx.space.text
    passages = split_passages(text, enc.count_tokens, enc.max_passage_tokens)
    cap, why = passage_cap(text)
    if len(passages) > cap:
        yield Note(f"{why}: indexed its first {cap:,} of {len(passages):,} passages (MMR_MAX_PASSAGES)")
        passages = passages[:cap]
    for p in passages:
        yield Item({**p.locator(), "encoding": encoding}, p.text, p.text, "text")


def check_query(value: Any) -> None:
    if not isinstance(value, str):
        raise UsageError(f"a text query must be a string, got {type(value).__name__}")
    if not value.strip():
        raise UsageError("the text query is empty; type what you are looking for")


def describe(locator: dict[str, Any], text: str | None) -> tuple[str, str]:
    snippet = " ".join((text or "").split())
    return f":{locator.get('line', 1)}", f'  "{snippet[:100]}{"…" if len(snippet) > 100 else ""}"'


TEXT = register_modality(Modality(
    name="text",
    extensions=lambda: EXTENSIONS,
    decode=decode,
    encoder=lambda space: space.text,
    encode_query=lambda enc, value: enc.encode([value])[0],
    file_query=False,
    check_query=check_query,
    describe=describe,
    media_types={".md": "text/markdown; charset=utf-8", ".txt": "text/plain; charset=utf-8"},
))
