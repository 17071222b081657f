"""Keyword and hybrid search: an FTS5 index over passages, path words and media tags, kept in step with the
catalog by the same transactions; hybrid finds what vector search misses (exact codes and names) without
losing what it finds."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mmretrieval as mmr
from mmretrieval.cli import main
from mmretrieval.train.corpus import keyword_corpus


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hybrid")
    queries = keyword_corpus(root / "docs", seed=11)
    eng = mmr.Engine(root / "idx", model="tiny")
    eng.index([root / "docs"])
    yield root, queries, eng
    eng.close()


def _recall(eng, queries, kind, mode):
    found = []
    for q in queries:
        if q["kind"] == kind:
            hits = eng.search(q["query"], types=["text"], k=10, mode=mode)
            found.append(any(Path(h.path).name in q["relevant"] for h in hits))
    return float(np.mean(found))


def test_hybrid_finds_exact_terms_without_losing_meaning(docs):
    _, queries, eng = docs
    r = {(kind, mode): _recall(eng, queries, kind, mode) for kind in ("exact", "meaning")
         for mode in ("vector", "keyword", "hybrid")}
    print(json.dumps({f"{k}/{m}": v for (k, m), v in r.items()}))
    assert r["exact", "vector"] < 0.5                    # codes and names mean nothing to the text tower
    assert r["exact", "hybrid"] >= 0.98 and r["exact", "keyword"] >= 0.98
    assert r["meaning", "vector"] >= 0.98
    assert r["meaning", "hybrid"] >= r["meaning", "vector"] - 0.02  # what vector search finds stays
    assert r["meaning", "keyword"] < r["meaning", "hybrid"]          # words alone miss paraphrases


def test_keyword_index_follows_changes_moves_and_removals(tmp_path, tiny_space_dir):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "a.txt").write_text("Invoice QZ-1187 for the red bicycle.\n")
    (lib / "b.txt").write_text("A note about a blue square.\n")
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    eng.index([lib])
    names = lambda q: [Path(h.path).name for h in eng.search(q, types=["text"], mode="keyword")]  # noqa: E731
    assert names("QZ-1187") == ["a.txt"]
    (lib / "a.txt").write_text("Invoice QZ-2290 for the red bicycle.\n")
    os.utime(lib / "a.txt", (1e9, 1e9))
    eng.index([lib])
    assert names("QZ-1187") == [] and names("QZ-2290") == ["a.txt"]
    (lib / "b.txt").rename(lib / "harbour-notes.txt")  # a move: the vectors stay, the path's words change
    rep = eng.index([lib])
    assert rep.files_moved == 1
    assert names("harbour") == ["harbour-notes.txt"] and names("b") == []
    (lib / "a.txt").unlink()
    eng.index([lib])
    assert names("QZ-2290") == []
    assert eng.check()["keyword_index_mismatches"] == 0 and eng.check()["consistent"]
    with pytest.raises(mmr.UsageError, match="needs a text query"):
        eng.search(image=str(Path(__file__).parents[1] / "assets" / "demo" / "images" / "red-circle.png"),
                   mode="hybrid")
    with pytest.raises(mmr.UsageError, match="valid: vector, keyword, hybrid"):
        eng.search("x", mode="fuzzy")
    eng.close()


def _with_iptc(jpeg: bytes, keywords: list[bytes], caption: bytes) -> bytes:
    """A JPEG with an IPTC block (Photoshop APP13, resource 0x0404): keywords (2:25) and a caption (2:120)."""
    import struct

    def dataset(number: int, value: bytes) -> bytes:
        return b"\x1c\x02" + bytes([number]) + struct.pack(">H", len(value)) + value

    iptc = b"".join(dataset(25, k) for k in keywords) + dataset(120, caption)
    resource = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(iptc)) + iptc + b"\x00" * (len(iptc) % 2)
    segment = b"Photoshop 3.0\x00" + resource
    return jpeg[:2] + b"\xff\xed" + struct.pack(">H", len(segment) + 2) + segment + jpeg[2:]


def test_media_tags_are_searchable_words(tmp_path, tiny_space_dir):
    import io

    import soundfile as sf

    from mmretrieval.synth import shape_image, tone

    lib = tmp_path / "lib"
    lib.mkdir()
    exif = Image.Exif()
    exif[270] = "sunset over Valletta harbour"          # ImageDescription
    exif[0x9C9E] = "holiday;malta".encode("utf-16-le")   # XPKeywords
    shape_image("orange", "circle", size=96).convert("RGB").save(lib / "IMG_0001.jpg", exif=exif)
    shape_image("blue", "square", size=96).save(lib / "IMG_0002.png")
    buf = io.BytesIO()
    shape_image("red", "circle", size=96).convert("RGB").save(buf, "JPEG")
    (lib / "DSC_7.jpg").write_bytes(_with_iptc(buf.getvalue(), [b"lighthouse", b"Gozo"], b"A red buoy at dawn"))
    with sf.SoundFile(lib / "take3.flac", "w", samplerate=16000, channels=1) as f:
        f.title = "Morning chorus"
        f.artist = "Dagny Lindqvist"
        f.write(tone(880, 1.0, 16000))
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    eng.index([lib])
    kw = lambda q, t: [Path(h.path).name for h in eng.search(q, types=[t], mode="keyword")]  # noqa: E731
    assert kw("Valletta", "image") == ["IMG_0001.jpg"] and kw("malta", "image") == ["IMG_0001.jpg"]
    assert kw("Gozo", "image") == ["DSC_7.jpg"] and kw("buoy", "image") == ["DSC_7.jpg"]  # IPTC
    assert kw("Lindqvist", "audio")[:1] == ["take3.flac"] and kw("chorus", "audio")[:1] == ["take3.flac"]
    hybrid = [Path(h.path).name for h in eng.search("Valletta", types=["image"], mode="hybrid", k=2)]
    assert hybrid[0] == "IMG_0001.jpg"
    eng.close()


def test_cli_and_http_modes(docs, capsys):
    root, queries, _ = docs
    code = next(q for q in queries if q["kind"] == "exact")
    assert main(["search", code["query"], "--index", str(root / "idx"), "--type", "text", "--mode", "hybrid",
                 "-k", "3", "--json"]) == 0
    assert Path(json.loads(capsys.readouterr().out)[0]["path"]).name == code["relevant"][0]
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mmretrieval.server.app import create_app

    with TestClient(create_app(root / "idx")) as client:
        r = client.get("/search", params={"q": code["query"], "type": "text", "mode": "keyword", "k": 3})
        assert Path(r.json()[0]["path"]).name == code["relevant"][0]
        r = client.post("/search", json={"text": code["query"], "types": ["text"], "mode": "hybrid", "k": 3})
        assert Path(r.json()[0]["path"]).name == code["relevant"][0]
        assert client.get("/search", params={"q": "x", "mode": "fuzzy"}).status_code == 422
