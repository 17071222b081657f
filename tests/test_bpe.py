"""The torch-free CLIP tokenizer (issue #37's query path) gives open_clip's tokens, byte for byte."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmretrieval.encoders.bpe import ClipTokenizer, for_text_config, vocabulary_path
from mmretrieval.errors import SpaceError

BLNS = Path(__file__).resolve().parents[2] / "shared" / "realworld" / "big-list-of-naughty-strings" / "blns.txt"
ODD = [
    "a dog 🐶 on the beach", "👩‍👩‍👧‍👦 family", "東京タワーの夜景", "서울의 밤", "مرحبا بالعالم", "Ünïcödé naïve café",
    "supercalifragilisticexpialidocious" * 5, "pneumonoultramicroscopicsilicovolcanoconiosis",
    "&amp;lt;b&amp;gt; bold &quot;quoted&quot; &#x1F600;", "can't won't I'll we've you'd she's", "  spaced\tout\n",
    "", " ", "x" * 500, "123456789 3.14 1e-9 0x1F", "HELLO World MiXeD", "e\u0301 (combining)", "\u200b\u200d zero width",
    "ﬁ ligature Ⅻ roman", "A" + "\u0300" * 50, "mojibake: Ã©tÃ© cafÃ©", "tabs\t\tand\r\nreturns", "<start_of_text> x",
]


def corpus() -> list[str]:
    lines = BLNS.read_text(encoding="utf-8", errors="replace").split("\n") if BLNS.is_file() else []
    return [s for s in lines + ODD if s.encode("utf-8", errors="ignore").decode("utf-8") == s]


@pytest.fixture(scope="module")
def reference():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer


@pytest.mark.parametrize("context,clean", [(77, "lower"), (16, "lower"), (77, "canonicalize"), (77, "whitespace")])
def test_same_tokens_as_open_clip(reference, context, clean):
    texts = corpus()
    assert len(texts) >= (700 if BLNS.is_file() else len(ODD) - 1)
    ours = ClipTokenizer(context, clean)(texts)
    theirs = reference(context_length=context, clean=clean)(texts).numpy()
    assert ours.dtype == np.int64 and ours.shape == theirs.shape == (len(texts), context)
    differ = [t for t, a, b in zip(texts, ours, theirs) if (a != b).any()]
    assert not differ, differ[:5]
    if context == 16:  # truncated rows end with the end marker, as open_clip's
        assert (ours[:, -1][ours[:, -1] != 0] == ClipTokenizer().eot).all()


def test_which_models_use_it():
    assert isinstance(for_text_config({"context_length": 77, "vocab_size": 49408}), ClipTokenizer)
    assert for_text_config({"context_length": 32}).context_length == 32
    assert for_text_config({"hf_tokenizer_name": "bert-base-uncased"}) is None  # a Hugging Face tokenizer
    assert for_text_config({"context_length": 64}, "ViT-B-16-SigLIP") is None
    assert for_text_config({"tokenizer_kwargs": {"reduction_mask": "random"}}) is None
    assert for_text_config({"tokenizer_kwargs": {"clean": "canonicalize"}}).clean == "canonicalize"
    with pytest.raises(SpaceError, match="valid: lower, whitespace, canonicalize"):
        ClipTokenizer(clean="upper")


def test_imports_neither_torch_nor_open_clip():
    code = ("import sys; from mmretrieval.encoders.bpe import ClipTokenizer; t = ClipTokenizer(); "
            "assert t(['a red circle'])[0, 1] > 0; "
            "print(sorted(m for m in ('torch', 'open_clip', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert vocabulary_path().name == "bpe_simple_vocab_16e6.txt.gz"
