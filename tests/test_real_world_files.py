"""The whole of ../shared/realworld (~390 odd files that other projects wrote for their own tests; see its
SOURCES.md) indexed as a user would: every file is indexed, skipped with a one-line reason about the file,
or counted as another type; the summary adds up; stderr holds nothing; a second run changes nothing.
Skipped when ../shared is absent (a user's clone)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mmretrieval.store import Store

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "realworld"
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/realworld is not here")


def mmr(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmretrieval.cli", *args], capture_output=True, text=True,
                          env=env, timeout=1200)


def regular_files(root: Path) -> set[str]:
    out = set()
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        out |= {os.path.join(d, f) for f in files if not f.startswith(".")}
    return out


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("realworld")
    env = {**os.environ, "MMR_CACHE": str(tmp / "cache")}
    idx = tmp / "idx"
    first = mmr("index", str(REAL), "--index", str(idx), "--model", "tiny", "--json", env=env)
    return idx, env, first


def test_every_file_is_accounted_for_and_stderr_stays_clean(indexed):
    idx, env, first = indexed
    assert first.returncode == 0 and first.stderr == "", first.stderr[-3000:]
    rep = json.loads(first.stdout)
    files = regular_files(REAL)
    st = Store(idx, readonly=True)
    rows = st.catalog.files()
    st.close()
    indexed_files = {p for p, r in rows.items() if r.status == "indexed"}
    skipped = {s["path"]: s["reason"] for s in rep["skipped"]}
    ignored = set(rep["ignored_files"])
    assert indexed_files | set(skipped) | ignored == files
    assert not (indexed_files & set(skipped)) and not (indexed_files & ignored) and not (set(skipped) & ignored)
    assert rep["files_new"] == len(indexed_files) and rep["files_new"] + len(skipped) + len(ignored) == len(files)
    assert sum(rep["ignored"].values()) == len(ignored)
    for path, reason in skipped.items():
        assert reason and "\n" not in reason and len(reason) < 300, (path, reason)
        # about the file, never a framework's internals
        assert not re.search(r"\b[A-Z]\w*(Error|Exception)\b|Traceback|site-packages", reason), (path, reason)
    assert rep["decoder_messages"] > 0 and Path(rep["messages_log"]).is_file()  # the chatter went to the log


def test_formats_and_reasons_that_used_to_go_wrong(indexed):
    idx, env, first = indexed
    rep = json.loads(first.stdout)
    skipped = {s["path"]: s["reason"] for s in rep["skipped"]}
    st = Store(idx, readonly=True)
    rows = st.catalog.files()
    status = {p: r.status for p, r in rows.items()}
    encodings = {}
    for p, r in rows.items():
        if r.modality == "text" and r.status == "indexed":
            encodings[p] = st.catalog.items_of_file(r.id)[0].locator.get("encoding")
    st.close()
    for rel in ("rclip/tests/e2e/images heic/bee.heic", "rclip/tests/e2e/images/duck.jp2", "rclip/tests/e2e/images/magpie.pbm",
                "mediafile/test/rsrc/full.m4a", "pydub/test/data/test5.webm",
                "pydub/test/data/bach.ogg", "pillow/Tests/images/hopper.ico", "pillow/Tests/images/hopper.psd",
                "pillow/Tests/images/12bit.cropped.tif", "pillow/Tests/images/12in16bit.tif"):
        assert status.get(str(REAL / rel)) == "indexed", (rel, skipped.get(str(REAL / rel)))
    assert skipped[str(REAL / "pillow/Tests/images/hopper_webp.tif")].startswith("TIFF with WEBP compression: not "
                                                                                 "supported by this libtiff")
    for rel, enc in (("chardet/tests/Big5/_ude_1.txt", "big5"), ("chardet/tests/KOI8-R/_ude_1.txt", "koi8-r"),
                     ("chardet/tests/windows-1255-hebrew/_ude_he2.txt", "cp1255"),
                     ("chardet/tests/UTF-32LE/nobom-utf32le.txt", "utf-32-le"),
                     ("chardet/tests/iso-2022-jp/_ude_1.txt", "iso2022_jp"),
                     ("chardet/tests/iso-2022-kr/_ude_iso2.txt", "iso2022_kr")):
        assert encodings.get(str(REAL / rel)) == enc, rel
    assert "binary data" in skipped[str(REAL / "raw-loader/test/fixtures/binary.txt")]
    notes = {n["path"]: n["note"] for n in rep["notes"]}
    assert notes[str(REAL / "chardet/tests/MacRoman/ioreg_output.txt")].startswith("machine-generated text")
    assert rep["items_added"] < 12_000  # the 748 KB dump once made 18,796 of 32,060 items


def test_second_run_changes_nothing_and_the_index_is_consistent(indexed):
    idx, env, first = indexed
    rep1 = json.loads(first.stdout)
    again = mmr("index", str(REAL), "--index", str(idx), "--json", env=env)
    assert again.returncode == 0 and again.stderr == ""
    rep2 = json.loads(again.stdout)
    assert rep2["items_added"] == 0 and rep2["files_new"] == 0 and rep2["files_removed"] == 0
    assert rep2["files_unchanged"] == rep1["files_new"] + len(rep1["skipped"])
    assert rep2["ignored"] == rep1["ignored"]
    check = mmr("check", "--index", str(idx), env=env)
    assert check.returncode == 0 and check.stdout.startswith("consistent"), check.stdout + check.stderr


def test_real_documents_give_pages_sections_times_and_figures(indexed):
    """pikepdf's and python-docx's test files and moviepy's subtitles: every one indexed or skipped for a reason
    about the file; pages, sections and cue times where they are; scanned pages OCR'd when the extra is there."""
    from mmretrieval.documents import ocr

    idx, env, first = indexed
    rep = json.loads(first.stdout)
    skipped = {s["path"]: s["reason"] for s in rep["skipped"]}
    st = Store(idx, readonly=True)
    rows = st.catalog.files()
    docs = [p for p in regular_files(REAL) if p.endswith((".pdf", ".docx", ".srt"))]
    assert len(docs) == 41
    for p in docs:
        assert (rows.get(p) is not None and rows[p].status == "indexed") or p in skipped, p

    def items(rel: str):
        return st.catalog.items_of_file(rows[str(REAL / rel)].id)

    four = items("pikepdf/tests/resources/fourpages.pdf")
    assert [(it.locator["page"], it.text) for it in four] == [(1, "First page"), (2, "Second page"),
                                                               (3, "Third page"), (4, "Last page")]
    outlines = {it.locator["page"] for it in items("pikepdf/tests/resources/outlines.pdf")}
    assert outlines == {1, 2}
    pics = [it for it in items("python-docx/features/steps/test_files/shp-inline-shape-access.docx")]
    assert [it.locator["figure"] for it in pics if it.modality == "image"] == [1]  # figure 0 is 140x56: a decoration
    heading = items("python-docx/features/steps/test_files/par-known-paragraphs.docx")
    assert heading[0].locator["section"] == "Heading Paragraph"
    srt = items("moviepy/media/subtitles.srt")
    assert srt[0].locator["t_start"] == 0.0 and "Red!" in srt[0].text
    assert skipped[str(REAL / "pikepdf/tests/resources/newline-buffer-test.pdf")] == "damaged PDF (PDFium cannot open it)"
    if ocr.available():
        congress = items("pikepdf/tests/resources/congress-gray.pdf")
        read = " ".join(it.text for it in congress if it.locator.get("ocr"))
        assert "Committee on Commerce" in read
    st.close()


def test_collection_views_on_files_nobody_here_made(indexed, tmp_path):
    """Dupes find the same content saved in other formats and encodings; clusters, outliers and the map run over
    every modality the index holds; stderr stays clean."""
    idx, env, _ = indexed
    run = mmr("dupes", "--index", str(idx), "--json", env=env)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    groups = [{Path(m["path"]).relative_to(REAL).as_posix() for m in g["members"]} for g in json.loads(run.stdout)["groups"]]
    expected = [{"chardet/tests/utf-8/_ude_russian.txt", "chardet/tests/KOI8-R/_ude_1.txt"},  # one text, two encodings
                {"pillow/Tests/images/tiff_gray_2_4_bpp/hopper2R.tif",  # one picture, two bit orders
                 "pillow/Tests/images/tiff_gray_2_4_bpp/hopper2.tif"}]
    for pair in expected:
        assert any(pair <= g for g in groups), pair
    for cmd in (["clusters", "--json"], ["outliers", "--json"], ["map", "--out", str(tmp_path / "map.png")]):
        run = mmr(*cmd, "--index", str(idx), env=env)
        assert run.returncode == 0 and run.stderr == "", (cmd, run.stderr)
    assert (tmp_path / "map.png").stat().st_size > 10_000
