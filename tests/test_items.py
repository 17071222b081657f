"""Items carry their modality: one file may give items of several modalities (a toy `bundle` container: a
caption and a figure), end to end through decode, the embed queues, the commit, the catalog, search, export and
import, and the Ray path's staging. Decoding streams: a file of 100,000 items is never held decoded at once.
Extension claims are decided by a registry rule, not by import order."""
from __future__ import annotations

import json
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

import mmretrieval as mmr
from mmretrieval.options import ItemOptions
from mmretrieval.index.build import convert
from mmretrieval.cli import main
from mmretrieval.encoders.base import Encoder
from mmretrieval.errors import DecodeError, UsageError
from mmretrieval.ingest.decode import HEAD
from mmretrieval.modalities import Item, Modality, Note, modality_of, register_modality, unregister_modality
from mmretrieval.synth import shape_image


# ----------------------------------------------------------------- a container: text and image items from one file
def _decode_bundle(data, path, ctx):
    doc = json.loads(data if data is not None else open(path, "rb").read())
    if not isinstance(doc, dict) or "caption" not in doc:
        raise DecodeError("a bundle is a JSON object with a caption")
    yield Item({"part": "caption"}, doc["caption"], doc["caption"], "text")
    for i, fig in enumerate(doc.get("figures", [])):
        img = shape_image(fig["colour"], fig["shape"])
        yield Item({"part": "figure", "figure": i}, None, ctx.space.image.preprocess(img), "image")
    if doc.get("sound"):
        yield Item({"part": "sound"}, None, np.zeros(16000, np.float32), "audio")


BUNDLE = Modality(
    name="bundle",
    extensions=lambda: {".bundle"},
    decode=_decode_bundle,
    encoder=lambda space: space.text,  # the file's own tower only says the space can take it
    encode_query=lambda enc, value: enc.encode([value])[0],
    file_query=False,
)


@pytest.fixture
def bundle_modality():
    register_modality(BUNDLE)
    yield BUNDLE
    unregister_modality("bundle")


def _bundle(path, caption, figures=(), sound=False):
    path.write_text(json.dumps({"caption": caption, "figures": [{"colour": c, "shape": s} for c, s in figures],
                                "sound": sound}))
    return path


def _library(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    _bundle(lib / "a.bundle", "a report on red circles", [("red", "circle"), ("blue", "square")])
    _bundle(lib / "b.bundle", "notes on green stars", [("green", "star")])
    shape_image("purple", "triangle").save(lib / "purple.png")
    (lib / "bad.bundle").write_text("[1, 2]")
    return lib


def test_a_file_gives_items_of_several_modalities(bundle_modality, tmp_path, tiny_space_dir, capsys):
    lib = _library(tmp_path)
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    rep = eng.index([lib])
    assert dict(rep.added) == {"text": 2, "image": 4}
    assert [(p.rsplit("/", 1)[1], r) for p, r in rep.skipped] == [
        ("bad.bundle", "a bundle is a JSON object with a caption")]

    cat = eng.store.catalog
    a = cat.file(str(lib / "a.bundle"))
    assert a.modality == "bundle"
    assert [(i.modality, i.locator, i.text) for i in cat.items_of_file(a.id)] == [
        ("text", {"part": "caption"}, "a report on red circles"),
        ("image", {"part": "figure", "figure": 0}, None), ("image", {"part": "figure", "figure": 1}, None)]

    # the figure is found as an image, the caption as a passage: both point into the same file
    hits = eng.search(image=shape_image("blue", "square"), types=["image"], k=2)
    assert (hits[0].path, hits[0].modality, hits[0].locator) == (str(lib / "a.bundle"), "image",
                                                                 {"part": "figure", "figure": 1})
    assert hits[0].score > 0.999
    hits = eng.search("notes on green stars", types=["text"], k=1)
    assert (hits[0].path, hits[0].text) == (str(lib / "b.bundle"), "notes on green stars")
    # keyword search reaches the container's passages too
    assert eng.search("report", types=["text"], mode="keyword", k=1)[0].path == str(lib / "a.bundle")

    vecs = {m: sum(len(c) for c in eng.vectors(m)) for m in ("text", "image")}
    assert vecs == {"text": 2, "image": 4}

    again = eng.index([lib])
    assert again.items_added == 0 and again.files_changed == 0
    assert eng.remove([lib / "a.bundle"]) == 1
    assert eng.stats()["items"] == {"text": 1, "image": 2}
    assert eng.check()["consistent"]
    eng.close()
    assert main(["info", "--index", str(tmp_path / "idx"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == {"text": 1, "image": 2}


def test_items_of_a_modality_the_space_lacks_are_left_out_and_said(bundle_modality, tmp_path, tiny_space_noaudio_dir):
    lib = tmp_path / "lib"
    lib.mkdir()
    _bundle(lib / "talk.bundle", "a talk with a chime", [("red", "circle")], sound=True)
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_noaudio_dir))
    rep = eng.index([lib])
    assert dict(rep.added) == {"text": 1, "image": 1}
    assert rep.notes == [(str(lib / "talk.bundle"), "1 audio item(s) not indexed (this space has no audio tower)")]


def test_several_modality_files_survive_export_and_import(bundle_modality, tmp_path, tiny_space_dir):
    pytest.importorskip("pyarrow")
    from mmretrieval.shards import export_shards, import_shards

    lib = _library(tmp_path)
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    eng.index([lib])
    export_shards(eng, tmp_path / "out", shard_rows=1)  # one file a part: a bundle spans two modalities' parts
    copy, rep = import_shards(tmp_path / "out", tmp_path / "copy")
    assert dict(rep.added) == {"text": 2, "image": 4}

    def items(e):
        cat = e.store.catalog
        return {p: [(i.modality, i.locator) for i in cat.items_of_file(r.id)] for p, r in cat.files().items()
                if r.status == "indexed"}

    assert items(copy) == items(eng)
    q = shape_image("red", "circle")
    assert [h.locator for h in copy.search(image=q, types=["image"], k=4)] == \
        [h.locator for h in eng.search(image=q, types=["image"], k=4)]


def test_staged_shards_keep_each_items_modality(tmp_path):
    pytest.importorskip("pyarrow")
    from mmretrieval.catalog import ItemRecord
    from mmretrieval.ingest.embed import EmbeddedFile
    from mmretrieval.ingest.staging import Staging
    from mmretrieval.ingest.walk import FileEntry

    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(3, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    f = EmbeddedFile(FileEntry("/x/doc.bundle", "bundle", 10, 1), "h", "fp",
                     [ItemRecord({"p": 0}, "words", "text"), ItemRecord({"f": 0}, None, "image"),
                      ItemRecord({"p": 1}, "more", "text")], vecs)
    plain = EmbeddedFile(FileEntry("/x/a.png", "image", 5, 1), "h2", "fp", [({"w": 1}, None)], vecs[:1])
    st = Staging(tmp_path / "stage", {"fingerprint": "fp", "dim": 8}, ItemOptions())
    st.write("k0", [f, plain])
    back = Staging(tmp_path / "stage", {"fingerprint": "fp", "dim": 8}, ItemOptions()).read("k0")
    assert [list(map(tuple, b.items)) for b in back] == [[({"p": 0}, "words", "text"), ({"f": 0}, None, "image"),
                                                          ({"p": 1}, "more", "text")], [({"w": 1}, None, "image")]]
    np.testing.assert_array_equal(back[0].vectors, vecs)
    np.testing.assert_array_equal(back[1].vectors, vecs[:1])


# ----------------------------------------------------------------- streaming: 100,000 items in bounded memory
class _Payload:
    """A large decoded item (64 KB) that counts how many of it are alive at once."""

    lock = threading.Lock()
    alive = 0
    most = 0

    def __init__(self, i: int) -> None:
        self.i = i
        self.data = np.empty(16384, np.float32)
        with _Payload.lock:
            _Payload.alive += 1
            _Payload.most = max(_Payload.most, _Payload.alive)

    def __del__(self) -> None:
        with _Payload.lock:
            _Payload.alive -= 1


class _CountEncoder(Encoder):
    modality = "count"

    def _encode_batch(self, batch):
        out = torch.zeros(len(batch), self.dim)
        for row, p in enumerate(batch):
            out[row, p.i % self.dim] = 1.0
            out[row, (p.i // self.dim) % self.dim] += 0.5
        return out


def _decode_count(data, path, ctx):
    n = int((data or open(path, "rb").read()).decode())
    yield Note(f"{n:,} generated items")
    for i in range(n):
        yield Item({"i": i}, None, _Payload(i))


def test_a_file_of_100k_items_streams_through_in_bounded_memory(tmp_path, tiny_space_dir):
    enc: dict[str, Encoder] = {}
    register_modality(Modality(name="count", extensions=lambda: {".count"}, decode=_decode_count,
                               encoder=lambda space: enc.setdefault("e", _CountEncoder(space.dim, space.device)),
                               encode_query=lambda e, v: e.encode([v])[0]))
    try:
        lib = tmp_path / "lib"
        lib.mkdir()
        (lib / "many.count").write_text("100000")
        (lib / "few.count").write_text("3")
        _Payload.alive = _Payload.most = 0
        eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
        rep = eng.index([lib], batch_size=32)
        assert rep.added["count"] == 100_003 and not rep.skipped
        assert sorted(rep.notes) == [(str(lib / "few.count"), "3 generated items"),
                                     (str(lib / "many.count"), "100,000 generated items")]
        # what a worker decodes ahead (decode.HEAD, 256), a batch being filled and one being encoded: never the file
        assert _Payload.most <= 400, _Payload.most
        cat = eng.store.catalog
        rows = cat.items_of_file(cat.file(str(lib / "many.count")).id)
        assert [r.locator["i"] for r in rows[:3]] == [0, 1, 2] and rows[-1].locator["i"] == 99_999
        # the vectors are each item's own, in order
        ids = np.array([rows[0].id, rows[70_001].id])
        got = eng.store.vectors.reconstruct(ids)
        want = _CountEncoder(eng.dim, torch.device("cpu")).encode([_Payload(0), _Payload(70_001)])
        # (at 100k items the index may store vectors compressed, as `index.choose` decides from free memory)
        np.testing.assert_allclose(got, want, atol=1e-3)
        assert (got.argmax(axis=1) == np.asarray(want).argmax(axis=1)).all()
        assert eng.check()["consistent"]
    finally:
        unregister_modality("count")


def test_a_stream_that_fails_midway_skips_its_file_with_the_reason(tmp_path, tiny_space_dir):
    def decode(data, path, ctx):
        for i in range(HEAD + 10):
            yield Item({"i": i}, None, _Payload(i))
        raise DecodeError("truncated after 266 items")

    register_modality(Modality(name="count", extensions=lambda: {".count"}, decode=decode,
                               encoder=lambda space: _CountEncoder(space.dim, space.device),
                               encode_query=lambda e, v: e.encode([v])[0]))
    try:
        lib = tmp_path / "lib"
        lib.mkdir()
        (lib / "cut.count").write_text("x")
        shape_image("red").save(lib / "red.png")
        eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
        rep = eng.index([lib])
        assert rep.skipped == [(str(lib / "cut.count"), "truncated after 266 items")]
        assert dict(rep.added) == {"image": 1}
        assert eng.check()["consistent"]
    finally:
        unregister_modality("count")


# ----------------------------------------------------------------- extension claims
def test_extension_claims_go_by_priority_and_ties_are_refused():
    assert modality_of("song.webm") == "video"  # a container over a bare stream: video's claim is the higher
    assert modality_of("song.ogg") == "audio"
    mine = Modality(name="clip", extensions=lambda: {".ogg", ".clip"}, decode=lambda d, p, c: [],
                    encoder=lambda space: None, encode_query=lambda e, v: None)
    with pytest.raises(UsageError, match=r"modalities 'audio' and 'clip' both claim \.ogg at priority 0"):
        register_modality(mine)
    assert modality_of("song.ogg") == "audio"
    register_modality(replace(mine, claim_priority=10))
    try:
        assert modality_of("song.ogg") == "clip" and modality_of("a.CLIP") == "clip"
        assert modality_of("song.flac") == "audio"
    finally:
        unregister_modality("clip")
    assert modality_of("song.ogg") == "audio"


# ----------------------------------------------------------------- vectors as a stream
def test_vectors_stream_in_chunks_with_their_modality(tmp_path, tiny_space_dir):
    lib = tmp_path / "lib"
    lib.mkdir()
    for c in ("red", "green", "blue"):
        shape_image(c).save(lib / f"{c}.png")
        (lib / f"{c}.txt").write_text(f"A {c} circle.")
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    eng.index([lib])
    chunks = list(eng.vectors(chunk=2))
    assert [len(c) for c in chunks] == [2, 1, 2, 1]  # image, then text: two chunks each
    ids = np.concatenate([c.ids for c in chunks])
    mods = np.concatenate([c.modalities for c in chunks])
    rows = eng.store.catalog.items(ids.tolist())
    assert all(rows[int(i)].modality == m for i, m in zip(ids, mods))
    vecs = np.concatenate([c.vectors for c in chunks])
    assert vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(vecs, eng.store.vectors.reconstruct(ids), atol=1e-6)
    assert [len(c) for c in eng.vectors("text")] == [3]
    assert list(eng.vectors("video")) == []  # a container type: the items of video files (none here)
    with pytest.raises(UsageError, match="unknown result type 'sculpture'"):
        list(eng.vectors("sculpture"))
    with pytest.raises(UsageError, match="chunk must be a positive integer"):
        list(eng.vectors(chunk=0))


def test_vectors_stream_in_the_stored_precision(tmp_path):
    from mmretrieval.index.choose import choose_index
    from mmretrieval.index.vector_index import VectorIndex

    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(600, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(600, dtype=np.int64) * 3
    flat = VectorIndex.create(16)
    flat.add(ids, vecs)
    ivf = convert(flat, choose_index(600, 16, None, "ivf-fp16"))
    stored = np.concatenate([v for _, v in ivf.iter_vectors(stored=True, chunk=256)])
    got_ids = np.concatenate([i for i, _ in ivf.iter_vectors(stored=True, chunk=256)])
    assert stored.dtype == np.float16
    order = np.argsort(got_ids)
    np.testing.assert_array_equal(got_ids[order], ids)
    np.testing.assert_allclose(stored[order].astype(np.float32), vecs, atol=1e-3)
    unit = np.concatenate([v for _, v in ivf.iter_vectors(chunk=256)])
    assert unit.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1, atol=1e-6)
    flat_chunks = [v for _, v in flat.iter_vectors(stored=True, chunk=256)]
    assert [c.shape[0] for c in flat_chunks] == [256, 256, 88] and flat_chunks[0].dtype == np.float32


# ----------------------------------------------------------------- how files are cut: the index's, recorded
def test_item_options_are_recorded_and_kept_by_the_index(tmp_path, tiny_space_dir, capsys):
    import soundfile as sf

    from mmretrieval.synth import tone

    lib = tmp_path / "lib"
    lib.mkdir()
    sf.write(lib / "long.wav", tone(300, 9.0, 8000), 8000)
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    assert eng.index([lib], pool_audio=True).added["audio"] == 1
    assert eng.stats()["item_options"] == {"audio_pooled": True, "ocr": "scans"}
    sf.write(lib / "later.wav", tone(500, 9.0, 8000), 8000)
    assert eng.index([lib]).added["audio"] == 1  # a later run without the option cuts new files the same way
    with pytest.raises(UsageError, match="this index cuts audio into one item per file .* holds 2 audio item"):
        eng.index([lib], pool_audio=False)
    eng.close()
    assert main(["index", str(lib), "--no-pool-audio", "--index", str(tmp_path / "idx")]) == 2
    assert "--no-pool-audio would mix both" in capsys.readouterr().err

    # an index made before the options were recorded: read from its items
    with mmr.Engine(tmp_path / "idx") as eng:
        with eng.store.catalog.transaction():
            eng.store.catalog.db.execute("DELETE FROM meta WHERE key='item_options'")
    sf.write(lib / "third.wav", tone(700, 9.0, 8000), 8000)
    with mmr.Engine(tmp_path / "idx") as eng:
        assert eng.index([lib]).added["audio"] == 1
        assert eng.stats()["item_options"] == {"audio_pooled": True, "ocr": "scans"}

    # no audio yet: the option may still change, and the last one given is recorded
    pics = tmp_path / "pics"
    pics.mkdir()
    shape_image("red").save(pics / "red.png")
    with mmr.Engine(tmp_path / "idx2", model=str(tiny_space_dir)) as eng:
        eng.index([pics], pool_audio=True)
        eng.index([pics], pool_audio=False)
        assert eng.stats()["item_options"] == {"audio_pooled": False, "ocr": "scans"}
