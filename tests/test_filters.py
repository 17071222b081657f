"""Metadata filters (path, date, size, extension) and sorting: a filtered search returns exactly what brute
force over the filtered set returns, also on approximate indexes (IVF, HNSW) where the filter is selective;
dates come from EXIF / audio tags, else the file's mtime."""
from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime, timezone

import numpy as np
import pytest
from PIL import Image

import mmretrieval as mmr
from mmretrieval.catalog import SCHEMA_VERSION
from mmretrieval.index.build import convert
from mmretrieval.cli import main
from mmretrieval.index.choose import choose_index
from mmretrieval.ingest.embed import EmbeddedFile
from mmretrieval.ingest.walk import FileEntry
from mmretrieval.query import Filters, parse_filters


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


# --------------------------------------------------------------------------- exact reference at IVF/HNSW sizes
N = 12_000
FOLDERS = ["/lib/photos/2021", "/lib/photos/2022", "/lib/music", "/lib/docs", "/lib/rare"]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, tiny_space_dir):
    """12 k items with known vectors and attributes, in an IVF index (pinned)."""
    from mmretrieval.synth import shape_image

    tmp = tmp_path_factory.mktemp("filters")
    shape_image("red", "circle", size=64).save(tmp / "seed.png")
    eng = mmr.Engine(tmp / "idx", model=str(tiny_space_dir))
    eng.index([tmp / "seed.png"], index_type="ivf-flat")
    eng.remove([tmp / "seed.png"])
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((30, eng.dim))
    x = centers[rng.integers(30, size=N)] + 0.4 * rng.standard_normal((N, eng.dim))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    folder = rng.choice(len(FOLDERS), size=N, p=[0.3, 0.3, 0.2, 0.19, 0.01])
    ext = rng.choice(["jpg", "png", "flac"], size=N)
    size = rng.integers(1, 5_000_000, size=N)
    date = _ts("2020-01-01") + rng.uniform(0, 3 * 365 * 86400, size=N)
    exif = rng.random(N) < 0.5
    files = []
    for i in range(N):
        path = f"{FOLDERS[folder[i]]}/f{i:05d}.{ext[i]}"
        meta = {"date": float(date[i]), "date_source": "exif"} if exif[i] else None
        mtime_ns = int(date[i] * 1e9) if not exif[i] else int(_ts("2024-06-01") * 1e9)
        files.append(EmbeddedFile(FileEntry(path, "image", int(size[i]), mtime_ns), f"{i:064x}", eng.space.fingerprint,
                                  [({"width": 1, "height": 1}, None)], x[i:i + 1], meta=meta))
    eng.add_embeddings(files)
    assert eng.stats()["index_type"] == "ivf-flat"
    attrs = {"path": np.array([f.entry.path for f in files]), "ext": ext, "size": size, "date": date}
    ids = np.array(sorted(eng.store.catalog.item_ids().tolist()))
    rows = eng.store.catalog.items(ids.tolist())
    by_path = {f.entry.path: k for k, f in enumerate(files)}
    order = np.array([by_path[rows[i].path] for i in ids])  # item id -> row of x / attrs
    yield eng, x[order], {k: v[order] for k, v in attrs.items()}, ids
    eng.close()


def _brute(x, ids, mask, q, k):
    sims = x[mask] @ q
    top = np.lexsort((ids[mask], -sims))[:k]
    return ids[mask][top], sims[top]


CASES = {
    "rare folder (1 %)": (dict(paths=["/lib/rare"]), lambda a: np.char.startswith(a["path"].astype(str), "/lib/rare/")),
    "glob + ext": (dict(paths=["/lib/photos/*/f1*"], exts=["png"]),
                   lambda a: np.char.startswith(a["path"].astype(str), "/lib/photos/")
                   & np.array(["/f1" in p for p in a["path"]]) & (a["ext"] == "png")),
    "date window (2 %)": (dict(after="2021-03-01", before="2021-03-23"),
                          lambda a: (a["date"] >= _ts("2021-03-01")) & (a["date"] < _ts("2021-03-23"))),
    "size and folder": (dict(paths=["/lib/docs"], min_size="4M"),
                        lambda a: np.char.startswith(a["path"].astype(str), "/lib/docs/") & (a["size"] >= 4 << 20)),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kind", ["ivf-flat", "hnsw"])
def test_filtered_search_equals_brute_force_over_the_filtered_set(synthetic, case, kind):
    eng, x, attrs, ids = synthetic
    if kind == "hnsw":
        eng.store.vectors = convert(eng.store.vectors, choose_index(N, eng.dim, kind="hnsw"))
    else:  # probing 1 list, as a speed-tuned index at scale would: only exact search of the filtered set is exact
        eng.store.vectors.ivf.nprobe = 1
    try:
        spec, select = CASES[case]
        mask = select(attrs)
        assert 0 < mask.sum() < 0.05 * N  # selective: where an approximate index misses hits
        rng = np.random.default_rng(1)
        for q in x[rng.integers(N, size=20)] + 0.05:
            q = q / np.linalg.norm(q)
            hits = eng.search_vector(q, k=10, types=["image"], filters=spec)
            want_ids, want_scores = _brute(x, ids, mask, q, 10)
            assert [h.id for h in hits] == want_ids.tolist()
            np.testing.assert_allclose([h.score for h in hits], want_scores, atol=1e-5)
    finally:
        eng.store.load_vectors(eng.dim)


def test_sort_by_date_and_path_orders_the_hits_that_pass(synthetic):
    eng, x, attrs, ids = synthetic
    q = x[7]
    spec = {"paths": ["/lib/photos"]}
    by_rel = eng.search_vector(q, k=15, types=["image"], filters=spec)
    by_date = eng.search_vector(q, k=15, types=["image"], filters=spec, sort="date")
    by_path = eng.search_vector(q, k=15, types=["image"], filters=spec, sort="path")
    assert {h.id for h in by_rel} == {h.id for h in by_date} == {h.id for h in by_path}  # same hits, reordered
    dates = [h.date for h in by_date]
    assert dates == sorted(dates, reverse=True) and [h.rank for h in by_date] == list(range(1, 16))
    assert [h.path for h in by_path] == sorted(h.path for h in by_path)
    row = {i: k for k, i in enumerate(ids)}
    for h in by_date:  # EXIF date where the file had one; its mtime otherwise (both were set from `date`)
        assert h.date == pytest.approx(attrs["date"][row[h.id]], abs=1e-3)


def test_filters_validate_and_say_what_is_wrong(synthetic):
    eng, x, _, _ = synthetic
    with pytest.raises(mmr.UsageError, match="not a date"):
        eng.search_vector(x[0], filters={"after": "last tuesday"})
    with pytest.raises(mmr.UsageError, match="earlier than"):
        eng.search_vector(x[0], filters={"after": "2022-01-01", "before": "2021-01-01"})
    with pytest.raises(mmr.UsageError, match="unknown filter 'colour'"):
        eng.search_vector(x[0], filters={"colour": "red"})
    with pytest.raises(mmr.UsageError, match="valid: relevance, date, path"):
        eng.search_vector(x[0], sort="size")
    assert eng.search_vector(x[0], filters={"paths": ["/nowhere"]}) == []
    f = parse_filters(paths="~/a,*.jpg", exts=".JPG", min_size="1K")
    assert f == Filters(paths=(os.path.expanduser("~/a"), "*.jpg"), exts=("jpg",), min_size=1024)


# --------------------------------------------------------------------------- real files: EXIF, tags, mtime, CLI
@pytest.fixture(scope="module")
def dated(tmp_path_factory, tiny_space_dir):
    import soundfile as sf

    from mmretrieval.synth import shape_image, tone

    root = tmp_path_factory.mktemp("dated") / "lib"
    (root / "trip").mkdir(parents=True)
    img = shape_image("red", "circle", size=96)
    exif = Image.Exif()
    exif[0x0110] = "test camera"
    exif.get_ifd(0x8769)[36867] = "2019:05:04 10:00:00"  # DateTimeOriginal
    exif[270] = "sunset over the harbour"              # ImageDescription: a tag, for keyword search later
    img.convert("RGB").save(root / "trip" / "exif.jpg", exif=exif)
    img.save(root / "trip" / "plain.png")
    os.utime(root / "trip" / "plain.png", (_ts("2022-08-01"), _ts("2022-08-01")))
    with sf.SoundFile(root / "song.flac", "w", samplerate=16000, channels=1) as f:
        f.date = "2021-12-24"
        f.title = "carol"
        f.write(tone(440, 1.0, 16000))
    idx = root.parent / "idx"
    eng = mmr.Engine(idx, model=str(tiny_space_dir))
    eng.index([root])
    return root, idx, eng


def test_dates_come_from_exif_then_tags_then_mtime(dated):
    _, _, eng = dated
    rows = {os.path.basename(r[0]): r[1:] for r in eng.store.catalog.db.execute(
        "SELECT path, date, date_source, ext FROM files")}
    assert rows["exif.jpg"] == (pytest.approx(_ts("2019-05-04T10:00:00")), "exif", "jpg")
    assert rows["song.flac"] == (pytest.approx(_ts("2021-12-24")), "tag", "flac")
    assert rows["plain.png"] == (pytest.approx(_ts("2022-08-01")), "mtime", "png")


def test_cli_filters_and_sort(dated, capsys):
    root, idx, _ = dated
    base = ["search", "a red circle", "--index", str(idx), "--type", "image", "--json"]
    assert main(base + ["--after", "2020-01-01"]) == 0
    assert [os.path.basename(h["path"]) for h in json.loads(capsys.readouterr().out)] == ["plain.png"]
    assert main(base + ["--before", "2020-01-01"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [os.path.basename(h["path"]) for h in hits] == ["exif.jpg"] and hits[0]["date"] == "2019-05-04T10:00:00Z"
    assert main(base + ["--ext", "png", "--path", str(root / "trip")]) == 0
    assert [os.path.basename(h["path"]) for h in json.loads(capsys.readouterr().out)] == ["plain.png"]
    assert main(base + ["--path", str(root / "trip" / "*.jpg")]) == 0
    assert [os.path.basename(h["path"]) for h in json.loads(capsys.readouterr().out)] == ["exif.jpg"]
    assert main(base + ["--sort", "date"]) == 0
    assert [os.path.basename(h["path"]) for h in json.loads(capsys.readouterr().out)] == ["plain.png", "exif.jpg"]
    assert main(base + ["--after", "someday"]) == 2
    assert "not a date" in capsys.readouterr().err


def test_http_filters_and_sort(dated):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mmretrieval.server.app import create_app

    root, idx, _ = dated
    with TestClient(create_app(idx)) as client:
        r = client.get("/search", params={"q": "a red circle", "type": "image", "after": "2020-01-01"})
        assert [os.path.basename(h["path"]) for h in r.json()] == ["plain.png"]
        r = client.post("/search", json={"text": "a red circle", "types": ["image"], "sort": "date",
                                         "filters": {"paths": [str(root / "trip")], "exts": ["jpg", "png"]}})
        assert [os.path.basename(h["path"]) for h in r.json()] == ["plain.png", "exif.jpg"]
        r = client.get("/search", params={"q": "x", "before": "soon"})
        assert r.status_code == 422 and "not a date" in r.json()["error"]


def test_an_index_from_before_dates_is_upgraded_on_write(dated, tmp_path):
    """Schema 1 had no dates, tags or keyword index: a writer adds them (the mtime until a file is indexed
    again); a reader of an old index still filters by mtime."""
    import shutil

    _, idx, _ = dated
    old = tmp_path / "old"
    shutil.copytree(idx, old)
    db = sqlite3.connect(old / "catalog.sqlite")
    db.execute("DROP INDEX files_date")
    db.execute("DROP TABLE fts")
    for col in ("date", "date_source", "ext", "tags"):
        db.execute(f"ALTER TABLE files DROP COLUMN {col}")
    db.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    db.commit()
    db.close()
    reader = mmr.Engine(old, readonly=True)
    hits = reader.search("a red circle", types=["image"], filters={"after": "2020-01-01"})
    assert {os.path.basename(h.path) for h in hits} == {"plain.png", "exif.jpg"}  # exif.jpg's mtime is today
    reader.close()
    writer = mmr.Engine(old)
    assert writer.store.catalog.get_meta("schema_version") == str(SCHEMA_VERSION)
    assert {os.path.basename(h.path) for h in writer.search("a red circle", types=["image"], filters={"exts": ["png"]})} \
        == {"plain.png"}
    # the keyword index is built from what the catalog knows (passages and paths; tags come with a re-index)
    assert [os.path.basename(h.path) for h in writer.search("plain", types=["image"], mode="keyword")] == ["plain.png"]
    assert writer.check()["consistent"]
    writer.close()


def test_a_move_is_seen_by_path_filters_in_the_writer_and_in_readers(tmp_path, tiny_space_dir):
    """A commit that only moves a file changes no vector; cached path filters must still follow it."""
    import shutil

    from mmretrieval.synth import shape_image

    (tmp_path / "lib" / "a").mkdir(parents=True)
    (tmp_path / "lib" / "b").mkdir()
    shape_image("red", "circle", size=64).save(tmp_path / "lib" / "a" / "red.png")
    writer = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    writer.index([tmp_path / "lib"])
    reader = mmr.Engine(tmp_path / "idx", readonly=True)
    in_b = {"paths": [str(tmp_path / "lib" / "b")]}
    assert writer.search("a red circle", types=["image"], filters=in_b) == []
    assert reader.search("a red circle", types=["image"], filters=in_b) == []
    shutil.move(tmp_path / "lib" / "a" / "red.png", tmp_path / "lib" / "b" / "red.png")
    assert writer.index([tmp_path / "lib"]).files_moved == 1
    for eng in (writer, reader):
        hits = eng.search("a red circle", types=["image"], filters=in_b)
        assert [os.path.basename(h.path) for h in hits] == ["red.png"] and hits[0].path.startswith(in_b["paths"][0])
    writer.close()
    reader.close()
