"""CLIP's byte-level BPE tokenizer in numpy, without torch or open_clip.

A one-off text query should not import torch or open_clip just to turn words into token ids (issue #37).
`ClipTokenizer` gives the same tokens as open_clip's `SimpleTokenizer` (the OpenAI CLIP tokenizer: ftfy fix,
HTML entities unescaped twice, whitespace collapsed, lower case, byte-level BPE over the vocabulary open_clip
ships, start and end markers, truncation that keeps the end marker) as an int64 array, reading the vocabulary
file from open_clip's package folder without importing the package. `for_text_config` says whether a model's
text config uses this tokenizer at all (models with a Hugging Face tokenizer, SigLIP's, or a token-dropping
reduction do not).
"""
from __future__ import annotations

import gzip
import html
import importlib.util
import string
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpaceError

VOCABULARY = "bpe_simple_vocab_16e6.txt.gz"
MERGES = 49152 - 256 - 2   # the merges CLIP's vocabulary uses (the file holds more)
CONTEXT = 77
CLEANS = ("lower", "whitespace", "canonicalize")


def vocabulary_path() -> Path:
    """The BPE vocabulary open_clip ships, found without importing open_clip (which imports torch)."""
    spec = importlib.util.find_spec("open_clip")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / VOCABULARY
        if path.is_file():
            return path
    raise SpaceError(f"CLIP's BPE vocabulary ({VOCABULARY}) was not found: it ships with open_clip "
                     "(pip install open-clip-torch)")


@lru_cache(maxsize=1)
def byte_symbols() -> dict[int, str]:
    """Each byte as a printable character, so that BPE never sees whitespace or control characters (CLIP's
    table: printable Latin-1 bytes stand for themselves, the others map to code points from 256 up)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table  # in CLIP's order: the printable bytes first, then the others (the vocabulary's first 256 ids)


@lru_cache(maxsize=4)
def _tables(path: str) -> tuple[dict[str, int], dict[tuple[str, str], int], list[tuple[str, str]]]:
    with gzip.open(path) as f:
        lines = f.read().decode("utf-8").split("\n")[1:MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    symbols = list(byte_symbols().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<start_of_text>", "<end_of_text>"]
    return {tok: i for i, tok in enumerate(vocab)}, {m: i for i, m in enumerate(merges)}, merges


class ClipTokenizer:
    """Texts to CLIP token ids, `(len(texts), context_length)` int64, zero-padded; `encode` gives one text's ids
    without the markers."""

    def __init__(self, context_length: int = CONTEXT, clean: str = "lower", vocabulary: str | Path | None = None) -> None:
        import ftfy  # open_clip's own dependencies; both import in milliseconds
        import regex

        if clean not in CLEANS:
            raise SpaceError(f"unknown tokenizer clean {clean!r}; valid: {', '.join(CLEANS)}")
        self.context_length = int(context_length)
        self.clean = clean
        self.encoder, self.ranks, self._pairs = _tables(str(vocabulary or vocabulary_path()))
        self.sot, self.eot = self.encoder["<start_of_text>"], self.encoder["<end_of_text>"]
        self._fix = ftfy.fix_text
        self._words = regex.compile(r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
                                    r"""[^\s\p{L}\p{N}]+""", regex.IGNORECASE)
        self._bytes = byte_symbols()
        self._cache: dict[str, list[int]] = {"<start_of_text>": [self.sot], "<end_of_text>": [self.eot]}

    def _cleaned(self, text: str) -> str:
        text = html.unescape(html.unescape(self._fix(text))).strip()
        if self.clean == "canonicalize":
            text = text.replace("_", " ").translate(str.maketrans("", "", string.punctuation)).lower()
            return " ".join(text.split()).strip()
        text = " ".join(text.split()).strip()
        return text.lower() if self.clean == "lower" else text

    def _bpe(self, word: str) -> list[int]:
        """One pre-token's ids: merge the adjacent pair of lowest rank until none of its pairs is a merge."""
        if word in self._cache:
            return self._cache[word]
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            best = min(self.ranks.get(pair, MERGES) for pair in zip(parts, parts[1:]))
            if best == MERGES:
                break
            first, second = self._pairs[best]
            merged, i = [], 0
            while i < len(parts):
                if i < len(parts) - 1 and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = [self.encoder[p] for p in parts]
        self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for word in self._words.findall(self._cleaned(text)):
            out += self._bpe("".join(self._bytes[b] for b in word.encode("utf-8")))
        return out

    def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = np.zeros((len(texts), self.context_length), np.int64)
        for row, text in zip(out, texts):
            ids = [self.sot, *self.encode(text), self.eot]
            if len(ids) > self.context_length:  # truncated, the end marker kept last
                ids = ids[:self.context_length]
                ids[-1] = self.eot
            row[:len(ids)] = ids
        return out


def for_text_config(text_cfg: dict[str, Any], model_name: str = "") -> ClipTokenizer | None:
    """This tokenizer for a model whose open_clip text config uses CLIP's (open_clip's `get_tokenizer` rules);
    None for a Hugging Face tokenizer, SigLIP's, or options it does not have."""
    kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
    if "hf_tokenizer_name" in text_cfg or "siglip" in model_name.lower():
        return None
    clean = kwargs.pop("clean", "lower")
    if kwargs or clean not in CLEANS:  # e.g. a reduction mask, which drops tokens at random
        return None
    return ClipTokenizer(int(text_cfg.get("context_length", CONTEXT)), clean)
