"""`mmr export` / `mmr import`: an index's vectors and metadata as shards in clip-retrieval's layout (npy +
row-aligned parquet per modality, a manifest with the space), and an index rebuilt from them equal to the
original, without re-embedding."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import mmretrieval as mmr
from mmretrieval.cli import main
from mmretrieval.errors import MMRError, SpaceMismatchError
from mmretrieval.shards import export_shards, import_shards

from document_files import sample_docx, sample_pdf

pq = pytest.importorskip("pyarrow.parquet")
DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("shards")
    lib = root / "lib"
    import shutil

    shutil.copytree(DEMO, lib)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2018:02:03 04:05:06"
    exif[270] = "lighthouse at dusk"
    Image.open(lib / "images" / "red-circle.png").convert("RGB").save(lib / "images" / "tagged.jpg", exif=exif)
    (lib / "broken.png").write_bytes(b"\x89PNG not really")
    sample_pdf(lib / "coast.pdf")     # passages with pages, a figure, a rendered scan (and its OCR'd text)
    sample_docx(lib / "hobbies.docx")
    eng = mmr.Engine(root / "idx", model="tiny")
    eng.index([lib])
    manifest = export_shards(eng, root / "out", shard_rows=7)  # small shards: several per modality
    return root, eng, manifest


def _rows(eng):
    cat = eng.store.catalog
    ids = cat.item_ids()
    rows = cat.items(ids.tolist())
    vecs = eng.store.vectors.reconstruct(ids)
    return {(r.path, json.dumps(r.locator, sort_keys=True)): (r.modality, r.text, r.date, v)
            for r, v in zip((rows[i] for i in ids.tolist()), vecs)}


def test_layout_is_clip_retrieval_s(exported):
    root, eng, manifest = exported
    out = root / "out"
    assert manifest["space"]["fingerprint"] == eng.space.fingerprint and manifest["skipped"] == 1
    assert json.loads((out / "manifest.json").read_text())["items"] == eng.stats()["items"]
    embs = sorted((out / "image" / "img_emb").glob("img_emb_0_*.npy"))
    assert len(embs) >= 2 and (out / "text" / "text_emb").is_dir() and (out / "audio" / "audio_emb").is_dir()
    seen_paths: dict[tuple[str, str], str] = {}
    for modality, folder in (("image", "img_emb"), ("text", "text_emb"), ("audio", "audio_emb")):
        for emb in sorted((out / modality / folder).glob("*.npy")):
            vecs = np.load(emb)
            meta = pq.read_table(out / modality / "metadata" / emb.name.replace(folder, "metadata").replace(".npy",
                                                                                                            ".parquet"))
            assert vecs.dtype == np.float32 and vecs.shape[0] == meta.num_rows > 0
            np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
            cols = meta.column_names
            assert {"path", "sha256", "locator", "text", "size", "mtime_ns", "date"} <= set(cols)
            if modality == "image":
                assert cols[0] == "image_path"  # what clip-retrieval and autofaiss read beside img_emb
            for p in set(meta.column("path").to_pylist()):
                # a file's items of one modality never span two shards (a PDF's passages and figures are in two)
                assert seen_paths.setdefault((modality, p), emb.name) == emb.name
    assert pq.read_table(out / "skipped.parquet").to_pylist()[0]["path"].endswith("broken.png")


def test_import_rebuilds_the_same_index(exported, tmp_path, capsys):
    root, eng, _ = exported
    assert main(["import", str(root / "out"), "--index", str(tmp_path / "copy")]) == 0
    assert "1 skipped" in capsys.readouterr().out
    copy = mmr.Engine(tmp_path / "copy", readonly=True)
    a, b = _rows(eng), _rows(copy)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key][:3] == b[key][:3], key  # modality, passage text, date (EXIF kept)
        np.testing.assert_allclose(a[key][3], b[key][3], atol=1e-6)
    for q in ("a red circle", "a high rising beep"):
        assert [h.path for h in eng.search(q, k=10)] == [h.path for h in copy.search(q, k=10)]
    assert [Path(h.path).name for h in copy.search("lighthouse", types=["image"], mode="keyword")] == ["tagged.jpg"]
    assert [p for p, _ in copy.skipped()] == [p for p, _ in eng.skipped()]
    assert copy.check()["consistent"]
    figures = sorted(json.loads(k[1]).get("page", 0) for k, v in b.items() if v[0] == "image" and "coast.pdf" in k[0])
    assert figures == [2, 3]  # the PDF's figure and its scanned page kept their places
    copy.close()
    again = import_shards(root / "out", tmp_path / "copy")  # into the same index again: files replaced
    assert again[0].stats()["items_total"] == eng.stats()["items_total"]
    again[0].close()


def test_import_refuses_another_space_and_damaged_shards(exported, tmp_path, tiny_space_dir, capsys):
    root, _, _ = exported
    other = mmr.Engine(tmp_path / "other", model=str(tiny_space_dir))
    other.close()
    with pytest.raises(SpaceMismatchError, match="not comparable"):
        import_shards(root / "out", tmp_path / "other")
    assert main(["import", str(root / "out"), "--index", str(tmp_path / "other")]) == 1
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(root / "out", bad)
    emb = sorted((bad / "image" / "img_emb").glob("*.npy"))[0]
    np.save(emb, np.load(emb)[:-1])
    with pytest.raises(MMRError, match="damaged"):
        import_shards(bad, tmp_path / "fresh")
    with pytest.raises(mmr.UsageError, match="not empty"):
        export_shards(mmr.Engine(root / "idx", readonly=True), root / "out")
    assert main(["import", str(tmp_path), "--index", str(tmp_path / "x")]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_clip_retrievals_reader_reads_them_as_they_are(exported):
    """embedding_reader is what autofaiss (`build_index`) and clip-retrieval (`index`) read shards with."""
    er = pytest.importorskip("embedding_reader")
    root, eng, _ = exported
    out = root / "out"
    reader = er.EmbeddingReader(str(out / "image" / "img_emb"), file_format="parquet_npy",
                                embedding_column="embedding", meta_columns=["image_path"],
                                metadata_folder=str(out / "image" / "metadata"))
    assert reader.count == eng.stats()["items"]["image"] and reader.dimension == eng.dim
    got = {}
    for emb, meta in reader(batch_size=5, start=0, end=reader.count):
        got.update(zip(meta["image_path"], emb))
    hits = {h.path: h for h in eng.search(image=str(DEMO / "images" / "red-circle.png"), types=["image"], k=50)}
    assert got.keys() == hits.keys()  # every image, once, with its own vector beside its own path
    for path, vec in got.items():
        own = eng.store.vectors.reconstruct(np.array([hits[path].id]))[0]
        np.testing.assert_allclose(vec, own, atol=1e-6)


def test_an_export_with_its_cache_lets_the_import_skip_what_the_cache_holds(tmp_path, monkeypatch):
    import shutil

    lib = tmp_path / "lib"
    shutil.copytree(DEMO, lib)
    with mmr.Engine(tmp_path / "idx", model="tiny") as eng:
        eng.index([lib])
        eng.remove([lib / "images"])  # their vectors go to the cache
        assert main(["export", str(tmp_path / "out"), "--with-cache", "--index", str(tmp_path / "idx")]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["embedding_cache"]["entries"] == 24 and "image" not in manifest["items"]
    eng, report = import_shards(tmp_path / "out", tmp_path / "imported")
    assert report.cache_entries == 24
    from mmretrieval.ingest.decode import Decoder

    monkeypatch.setattr(Decoder, "decode", lambda *a, **k: (_ for _ in ()).throw(AssertionError("decoded")))
    with eng:  # the images added to the imported index: from the cache the export carried, nothing decoded
        added = eng.index([lib / "images"])
        assert added.files_from_cache == 24 and not added.skipped
