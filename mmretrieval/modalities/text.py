"""Text: documents (plain text, PDF, Word, OpenDocument, EPUB, HTML, subtitles: see `documents`) split into
passages that fit the text tower's context, each an item that knows its page, section or time; a document's
figures and scanned pages become image items beside them."""
from __future__ import annotations

import os
import re
from typing import Any, Iterator

from ..documents import Figure, Limits, Remark, Text, blocks, extensions, format_of, place
from ..encoders.passages import split_passages
from ..errors import DecodeError, UsageError
from .base import DecodeContext, Item, Modality, Note, register_modality
from .metadata import FileMeta
from .sketch import words_likeness, words_sketch

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



def decode(data: bytes | None, path: str, ctx: DecodeContext) -> Iterator[Item | Note]:
    """A document's passages (text items, with their page, section or time) and its figures (image items), in
    reading order; OCR'd text of scans (and, with the `ocr="all"` option, of every figure) as passages marked
    `ocr`. Raises DecodeError when the document gives nothing to index."""
    fmt = format_of(path)
    if fmt is None:
        raise DecodeError(f"no document format reads {os.path.splitext(path)[1] or 'files without an extension'}")
    limits = Limits()
    enc = ctx.space.text
    total_cap = int(os.environ.get("MMR_MAX_PASSAGES") or MAX_PASSAGES)
    passages = figures = 0
    small = broken = dropped = 0
    capped = ""
    for b in blocks(fmt, data, path, limits):
        if isinstance(b, Remark):
            yield Note(b.text)
        elif isinstance(b, Text):
            if not b.text.strip():
                continue
            cut = split_passages(b.text, enc.count_tokens, enc.max_passage_tokens)
            cap, why = passage_cap(b.text)
            keep = max(0, min(cap, total_cap - passages))
            if len(cut) > keep:
                capped = capped or why
                dropped += len(cut) - keep
                cut = cut[:keep]
            for p in cut:
                yield Item({**b.where, **p.locator()}, p.text, p.text, "text")
            passages += len(cut)
        elif isinstance(b, Figure):
            try:
                img = b.load()
            except (DecodeError, OSError, ValueError, MemoryError):
                broken += 1
                continue
            if min(img.size) < limits.min_figure_px:
                small += 1
                continue
            figures += 1
            image_enc = ctx.space.image
            yield Item({**b.where, "width": img.size[0], "height": img.size[1]}, None,
                       image_enc.preprocess(img) if image_enc is not None else None, "image")
            if b.scan and ctx.options.ocr != "off" or ctx.options.ocr == "all":
                for item in ocr_items(img, b.where, ctx):
                    passages += 1
                    yield item
    if capped:
        yield Note(f"{capped}: indexed its first {passages:,} of {passages + dropped:,} passages (MMR_MAX_PASSAGES)")
    if small:
        yield Note(f"{small} picture(s) under {limits.min_figure_px} px skipped")
    if broken:
        yield Note(f"{broken} picture(s) that cannot be decoded skipped")
    if not passages and not figures:
        raise DecodeError("no text (empty or whitespace only)" if fmt.name == "plain" else
                          f"no text or pictures in this {fmt.name.upper() if len(fmt.name) <= 4 else fmt.name} file")


def passage_items(block: Text, ctx: DecodeContext) -> Iterator[Item]:
    """A text block's passages as text items, each knowing the block's place."""
    enc = ctx.space.text
    for p in split_passages(block.text, enc.count_tokens, enc.max_passage_tokens):
        yield Item({**block.where, **p.locator()}, p.text, p.text, "text")


def ocr_items(img: Any, where: dict[str, Any], ctx: DecodeContext) -> Iterator[Item]:
    """Passages of the text OCR reads in an image, located where the image is and marked `ocr`; none when the
    OCR extra is not installed (`documents.ocr.available`)."""
    from ..documents import ocr

    if not ocr.available():
        return
    text = ocr.read_text(img)
    if not text.strip():
        return
    enc = ctx.space.text
    for p in split_passages(text, enc.count_tokens, enc.max_passage_tokens):
        yield Item({**where, **p.locator(), "ocr": True}, p.text, p.text, "text")


def check_query(value: Any) -> None:
    if not isinstance(value, str):
        raise UsageError(f"a text query must be a string, got {type(value).__name__}")
    if not value.strip():
        raise UsageError("the text query is empty; type what you are looking for")


def describe(locator: dict[str, Any], text: str | None) -> tuple[str, str]:
    snippet = " ".join((text or "").split())
    where = place(locator) or f":{locator.get('line', 1)}"
    return where, f'  "{snippet[:100]}{"…" if len(snippet) > 100 else ""}"'


def metadata(data: bytes | None, path: str) -> FileMeta:
    fmt = format_of(path)
    if fmt is None or fmt.metadata is None:
        return FileMeta()
    try:
        when, tags = fmt.metadata(data, path)
    except Exception:  # metadata is a bonus: a document that decoded is indexed with or without it
        return FileMeta()
    return FileMeta(date=when, date_source="tag" if when is not None else None, tags=tags)


TEXT = register_modality(Modality(
    name="text",
    extensions=extensions,
    decode=decode,
    encoder=lambda space: space.text,
    encode_query=lambda enc, value: enc.encode([value])[0],
    file_query=False,
    check_query=check_query,
    describe=describe,
    metadata=metadata,
    media_types={".md": "text/markdown; charset=utf-8", ".txt": "text/plain; charset=utf-8",
                 ".srt": "text/plain; charset=utf-8", ".vtt": "text/vtt; charset=utf-8",
                 ".epub": "application/epub+zip"},
    sketch=lambda row: words_sketch(row.text),
    likeness=words_likeness,
))
