"""Read a file once, hash it, and turn it into the items the encoders take.

Runs in worker threads; raises `DecodeError` with the reason a user sees when a file is skipped.
"""
from __future__ import annotations

import codecs
import hashlib
import io
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..encoders.audio import load_audio, windows
from ..encoders.text import split_passages
from ..errors import DecodeError
from .walk import FileEntry

# Files larger than this are hashed and decoded by streaming from disk instead of from memory.
IN_MEMORY_LIMIT = 64 << 20


class PooledWindows(list):
    """All windows of one audio file, to be encoded and averaged into a single item."""


@dataclass
class DecodedItem:
    locator: dict[str, Any]
    text: str | None        # stored passage text (text items only)
    payload: Any            # what the encoder takes


@dataclass
class Decoded:
    entry: FileEntry
    hash: str
    items: list[DecodedItem]
    note: str | None = None  # something the user should know about an indexed file (e.g. only part of it)


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


def read_and_hash(path: str, size: int) -> tuple[str, bytes | None]:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            if size <= IN_MEMORY_LIMIT:
                data = f.read()
                h.update(data)
                return h.hexdigest(), data
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
            return h.hexdigest(), None
    except OSError as e:
        raise DecodeError(f"cannot read: {e.strerror or e}") from None


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


class Decoder:
    """Turns a `FileEntry` into items for one space (its tokenizer, image preprocessing, audio rate)."""

    def __init__(self, *, load_image: Callable[[Any], Any], prepare_image: Callable[[Any], Any],
                 count_tokens: Callable[[str], int],
                 max_tokens: int, audio: Any | None, pool_audio: bool = False) -> None:
        self.load_image = load_image
        self.prepare_image = prepare_image
        self.count_tokens = count_tokens
        self.max_tokens = max_tokens
        self.audio = audio  # AudioSpec or None
        self.pool_audio = pool_audio

    def decode(self, entry: FileEntry, digest: str, data: bytes | None) -> Decoded:
        """Decode a file already read (`data`, or None when too large to hold) and hashed."""
        if entry.size == 0 or (data is not None and len(data) == 0):
            raise DecodeError("empty file (0 bytes)")
        if entry.modality == "audio" and self.audio is None:
            raise DecodeError("this space has no audio tower (use a space with audio to index sound)")
        if entry.modality == "image":
            img = self.load_image(data if data is not None else entry.path)
            w, h = img.info.get("original_size", img.size)
            return Decoded(entry, digest, [DecodedItem({"width": w, "height": h}, None, self.prepare_image(img))])
        if entry.modality == "text":
            if data is None:
                with open(entry.path, "rb") as f:
                    data = f.read()
            text, encoding = decode_text_bytes(data)
            if not text.strip():
                raise DecodeError("no text (empty or whitespace only)")
            passages = split_passages(text, self.count_tokens, self.max_tokens)
            cap, why = passage_cap(text)
            note = None
            if len(passages) > cap:
                note = f"{why}: indexed its first {cap:,} of {len(passages):,} passages (MMR_MAX_PASSAGES)"
                passages = passages[:cap]
            return Decoded(entry, digest, [DecodedItem({**p.locator(), "encoding": encoding}, p.text, p.text)
                                           for p in passages], note)
        if entry.modality == "audio":
            sr = self.audio.sample_rate
            wave = _load_audio(entry.path, data, sr)
            wins = windows(wave, sr, self.audio.window_s, self.audio.hop_s)
            if self.pool_audio and len(wins) > 1:
                loc = {"start": 0.0, "end": round(wave.size / sr, 3), "pooled_windows": len(wins)}
                return Decoded(entry, digest, [DecodedItem(loc, None, PooledWindows(w.samples for w in wins))])
            return Decoded(entry, digest, [DecodedItem(w.locator(), None, w.samples) for w in wins])
        raise DecodeError(f"unsupported modality {entry.modality}")


def _load_audio(path: str, data: bytes | None, sr: int) -> np.ndarray:
    return load_audio(io.BytesIO(data) if data is not None else os.fspath(path), sr)
