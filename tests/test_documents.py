"""Documents as a user keeps them: PDF, Word, OpenDocument, EPUB, HTML and subtitles become passages that know
their page, section or time; their pictures and scanned pages become image items; OCR reads scans; bad files are
refused with a reason and nothing else breaks."""
from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import mmretrieval as mmr
from mmretrieval.cli import main
from mmretrieval.documents import Limits, blocks, format_of, place
from mmretrieval.documents import ocr
from mmretrieval.synth import shape_image
from mmretrieval.store import Store

from document_files import (SRT, VTT, edit_distance, sample_docx, sample_epub, sample_html, sample_odt, sample_pdf,
                            text_image, write_pdf, zip_bomb)

needs_ocr = pytest.mark.skipif(not ocr.available(), reason="the ocr extra (rapidocr) is not installed")


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_space_dir):
    """One folder of every document kind, indexed once with the tiny space."""
    d = tmp_path_factory.mktemp("library")
    sample_pdf(d / "coast.pdf")
    sample_docx(d / "hobbies.docx")
    sample_odt(d / "weekend.odt")
    sample_epub(d / "sea.epub")
    sample_html(d / "birds.html")
    (d / "train.srt").write_text(SRT, encoding="utf-8")
    (d / "volcano.vtt").write_text(VTT, encoding="utf-8")
    idx = tmp_path_factory.mktemp("idx") / "idx"
    eng = mmr.Engine(idx, model=str(tiny_space_dir))
    rep = eng.index([d])
    yield d, eng, rep
    eng.close()


def _items(eng, path: Path):
    st = eng.store
    row = st.catalog.files()[str(path)]
    return st.catalog.items_of_file(row.id)


def test_every_kind_is_indexed_with_where_each_passage_sits(library):
    d, eng, rep = library
    assert rep.skipped == [] and rep.files_new == 7, rep.skipped
    pdf = _items(eng, d / "coast.pdf")
    text = {(it.locator.get("page"), it.text.split("\n")[0]) for it in pdf if it.modality == "text" and
            not it.locator.get("ocr")}
    assert (1, "Harbours of the northern coast.") in text and (2, "Figure 1 shows the red circle used as a marker.") in text
    figs = [it for it in pdf if it.modality == "image"]
    assert sorted((f.locator["page"], f.locator.get("figure"), bool(f.locator.get("scan"))) for f in figs) == \
        [(2, 0, False), (3, None, True)]  # the 16-px decoration was skipped, the scanned page rendered
    notes = dict(rep.notes)
    assert "1 picture(s) under 64 px skipped" in notes[str(d / "coast.pdf")]

    docx = _items(eng, d / "hobbies.docx")
    assert {it.locator.get("section") for it in docx if it.modality == "text"} == {"Gardening", "Astronomy"}
    assert any("Basil\tMint" in it.text for it in docx if it.modality == "text")  # table cells kept apart
    assert [it.locator for it in docx if it.modality == "image"][0]["section"] == "Astronomy"
    odt = _items(eng, d / "weekend.odt")
    assert any("Bread rises  overnight\tin a warm kitchen." in it.text for it in odt if it.text)
    assert sum(it.modality == "image" for it in odt) == 1
    epub = _items(eng, d / "sea.epub")
    assert [(it.locator["chapter"], it.locator["section"]) for it in epub if it.modality == "text"] == \
        [(1, "The Storm"), (2, "Calm Water")]
    assert [it.locator.get("alt") for it in epub if it.modality == "image"] == ["the sun"]
    html = " ".join(it.text for it in _items(eng, d / "birds.html"))
    assert "Herons stand still in shallow water & wait for fish." in html and "Bitterns boom" in html
    for chrome in ("Home", "About us", "Site banner", "Copyright", "color: red", "Birds of the marsh"):
        assert chrome not in html  # navigation, header, footer, style and the <title> are not the page's text
    srt = [(it.locator["t_start"], it.locator["t_end"], it.text) for it in _items(eng, d / "train.srt")]
    assert srt == [(1.0, 6.0, "Welcome aboard the night train.\nTickets, please."),
                   (60.0, 64.25, "We arrive in Vienna at dawn.")]
    assert "1 cue(s) with an unreadable time line skipped" in notes[str(d / "train.srt")]
    vtt = [(it.locator["t_start"], it.text) for it in _items(eng, d / "volcano.vtt")]
    assert vtt == [(2.0, "The volcano erupted at noon."), (40.5, "Ash fell for three days.")]


def test_a_text_query_finds_the_page_and_hits_say_where(library, capsys):
    d, eng, _ = library
    hits = eng.search("herring ledger", types=["text"], mode="keyword", k=3)
    assert hits and Path(hits[0].path).name == "coast.pdf" and hits[0].locator["page"] == 1
    hits = eng.search("Vienna", types=["text"], mode="keyword", k=1)
    assert hits[0].locator["t_start"] == 60.0
    assert main(["search", "Vienna", "--index", str(eng.path), "--mode", "keyword", "-k", "1", "--type", "text"]) == 0
    assert 'train.srt [1:00.0–1:04.2]  "We arrive in Vienna at dawn."' in capsys.readouterr().out
    assert main(["search", "herring", "--index", str(eng.path), "--mode", "keyword", "-k", "1", "--type", "text", "--json"]) == 0
    hit = json.loads(capsys.readouterr().out)[0]
    assert hit["locator"]["page"] == 1 and hit["where"] == "p. 1"
    assert [h.where for h in eng.search("Saturn", types=["text"], mode="keyword", k=1)] == ["§ Astronomy"]
    # the document's own title and author are words of the file, for keyword search
    assert Path(eng.search("Keeper", types=["text"], mode="keyword", k=1)[0].path).name == "coast.pdf"
    assert Path(eng.search("Sailor", types=["text"], mode="keyword", k=1)[0].path).name == "sea.epub"
    assert place({"page": 3, "figure": 0}) == " p. 3 figure 1" and place({"page": 2, "scan": True}) == " p. 2 page image"


def test_an_image_query_finds_the_figure_inside_the_document(library, tmp_path):
    d, eng, _ = library
    q = tmp_path / "q.png"
    shape_image("blue", "square", size=200).save(q)
    hit = eng.search(image=str(q), types=["image"], k=1)[0]
    assert Path(hit.path).name == "hobbies.docx" and hit.locator["section"] == "Astronomy" and hit.score > 0.95
    shape_image("red", "circle", size=256).save(q)
    hit = eng.search(image=str(q), types=["image"], k=1)[0]
    assert Path(hit.path).name == "coast.pdf" and hit.locator == {"page": 2, "figure": 0, "width": 256, "height": 256}


def test_figure_thumbnails_come_from_inside_the_document(library):
    from mmretrieval.modalities import get_modality

    d, eng, _ = library
    for name in ("coast.pdf", "hobbies.docx", "weekend.odt", "sea.epub"):
        for it in _items(eng, d / name):
            if it.modality == "image":
                file_name, media_type, make = get_modality("image").thumbnail(it)
                img = Image.open(io.BytesIO(make()))
                assert media_type == "image/jpeg" and max(img.size) <= 256 and min(img.size) > 16, name


@needs_ocr
def test_a_scanned_page_is_read_by_ocr_and_found_by_its_words(library):
    d, eng, _ = library
    ocr_items = [it for it in _items(eng, d / "coast.pdf") if it.locator.get("ocr")]
    assert ocr_items and ocr_items[0].locator["page"] == 3 and ocr_items[0].locator["scan"]
    assert "seventeen ships" in " ".join(it.text for it in ocr_items).lower()
    hit = eng.search("lighthouse keeper", types=["text"], mode="keyword", k=1)[0]
    assert hit.locator.get("ocr") and hit.locator["page"] == 3
    assert get_desc(hit).startswith(" p. 3 page image [text in image]")


def get_desc(hit) -> str:
    from mmretrieval.modalities import get_modality
    return get_modality(hit.modality).describe(hit.locator, hit.text)[0]


@needs_ocr
def test_ocr_of_photos_only_when_asked_and_the_index_keeps_the_setting(tmp_path, tiny_space_dir):
    d = tmp_path / "photos"
    d.mkdir()
    text_image(["OPEN EVERY DAY", "fresh bread"], size=48, background=shape_image("yellow")).save(d / "sign.png")
    with mmr.Engine(tmp_path / "a", model=str(tiny_space_dir)) as eng:
        rep = eng.index([d])
        assert rep.added == {"image": 1}  # photos are not OCR'd by default
    with mmr.Engine(tmp_path / "b", model=str(tiny_space_dir)) as eng:
        rep = eng.index([d], ocr="all")
        assert rep.added["text"] >= 1
        hit = eng.search("bread", types=["text"], mode="keyword", k=1)[0]
        assert Path(hit.path).name == "sign.png" and hit.locator.get("ocr") and "fresh bread" in hit.text.lower()
        assert eng.stats()["item_options"]["ocr"] == "all"
        with pytest.raises(mmr.UsageError, match="--ocr off would mix both"):
            eng.index([d], ocr="off")


INSTALLED_OCR = [name for name, module in ocr.ENGINES.items() if importlib.util.find_spec(module) is not None]


@needs_ocr
@pytest.mark.parametrize("engine", INSTALLED_OCR)
def test_ocr_character_error_rate_on_rendered_sentences(engine, monkeypatch):
    """Known sentences in several sizes, rotations and on photo-like backgrounds: each engine's real models read
    them with a character error rate under 3 % overall (scripts/bench/documents.py measured 0.0 % for PP-OCRv6 and
    0.1 % for PP-OCRv4; PP-OCRv4 on small print without the enlarging second read: 12.8 %)."""
    monkeypatch.setenv("MMR_OCR_ENGINE", engine)
    assert ocr.engine() == engine
    sentences = ["The museum opens at nine o'clock.", "Platform 4 for trains to Leeds and York",
                 "Fresh fish sold daily 7.50 per kg", "Please keep this door closed"]
    cases = []
    for s in sentences:
        cases += [(s, text_image([s], size=32)), (s, text_image([s], size=56, angle=4)),
                  (s, text_image([s], size=44, background=shape_image("green", "square"))),
                  (s, text_image([s], size=20, width=700))]
    errors = total = 0
    for truth, img in cases:
        got = " ".join(ocr.read_text(img).split())
        errors += edit_distance(got.lower(), truth.lower())
        total += len(truth)
    assert errors / total < 0.03, errors / total



OCR_PEAK = r"""
import sys
sys.path.insert(0, sys.argv[1])
from document_files import edit_distance, text_image
from mmretrieval.documents import ocr
from mmretrieval.process_memory import current_bytes, peak_bytes, reset_peak

words = "harbour ledger vessel herring dusk lighthouse keeper counted ships dawn northern coast".split()
lines = [" ".join(words[(i * 5 + j) % len(words)] for j in range(8)) for i in range(40)]
reset_peak()
before = current_bytes()
errors = total = 0
for size, width, height in ((22, 1700, 2200), (30, 2000, 2000), (30, 2480, 3508)):  # pages of a scan's sizes
    got = " ".join(ocr.read_text(text_image(lines, size=size, width=width, height=height)).split()).lower()
    errors += edit_distance(got, " ".join(lines))
    total += len(" ".join(lines))
print((peak_bytes() - before) / 2**20, errors / total)
"""


@pytest.mark.skipif("pp-ocrv6" not in INSTALLED_OCR, reason="the ocr extra's engine (rapidocr 3.x) is not installed")
def test_ocr_memory_stays_bounded_on_whole_pages():
    """Full pages of 40 lines at a scan's sizes, in a process of their own, with the ocr extra's engine: loading
    the models and reading the pages raises its peak memory by under 700 MB (with the engine's default detector
    size and batches: ~1,020 MB), and the text is still read (character error rate under 3 %)."""
    engine = "pp-ocrv6"
    out = subprocess.run([sys.executable, "-c", OCR_PEAK, str(Path(__file__).parent)], capture_output=True,
                         text=True, env={**os.environ, "MMR_OCR_ENGINE": engine}, timeout=300)
    assert out.returncode == 0, out.stderr
    peak_mb, cer = map(float, out.stdout.split())
    assert peak_mb < 700, peak_mb
    assert cer < 0.03, cer


def _encrypted(src: Path, dst: Path, user: str) -> Path:
    import pypdf

    w = pypdf.PdfWriter(clone_from=str(src))
    w.encrypt(user_password=user, owner_password="owner-secret", algorithm="RC4-128")
    with open(dst, "wb") as f:
        w.write(f)
    return dst


def test_bad_documents_are_refused_with_a_reason_and_the_rest_indexed(tmp_path, tiny_space_dir):
    d = tmp_path / "bad"
    d.mkdir()
    good = sample_pdf(tmp_path / "good.pdf")
    data = good.read_bytes()
    _encrypted(good, d / "locked.pdf", "secret")
    _encrypted(good, d / "open-locked.pdf", "")          # an empty user password: opens without asking
    (d / "truncated.pdf").write_bytes(data[: len(data) // 3])
    xref = data.index(b"xref")
    (d / "bad-xref.pdf").write_bytes(data[:xref] + data[xref:].replace(b" 00000 n", b" 00077 n"))  # PDFium repairs
    (d / "empty.pdf").write_bytes(b"")
    (d / "notpdf.pdf").write_bytes(b"%PDF-1.4\n" + os.urandom(2000))
    (d / "truncated.docx").write_bytes(sample_docx(tmp_path / "t.docx").read_bytes()[:200])
    zip_bomb(d / "bomb.docx", "word/document.xml", 300 << 20)
    zip_bomb(d / "bomb.epub", "OEBPS/a.xhtml", 300 << 20, extra={
        "META-INF/container.xml": '<container><rootfiles><rootfile full-path="b.opf"/></rootfiles></container>',
        "b.opf": '<package><manifest><item id="a" href="OEBPS/a.xhtml" media-type="application/xhtml+xml"/>'
                 '</manifest><spine><itemref idref="a"/></spine></package>'})
    (d / "cyclic.epub").write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an empty zip: no package document
    sample_html(d / "scripty.html", script_mb=8)
    (d / "noise.srt").write_text("just some words\nwith no times\n")
    (d / "bad.odt").write_bytes(b"PK\x03\x04garbage")
    res = subprocess.run([sys.executable, "-m", "mmretrieval.cli", "index", str(d), "--index", str(tmp_path / "idx"),
                          "--model", str(tiny_space_dir), "--json", "--ocr", "off"], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0 and res.stderr == "", res.stderr[-2000:]
    rep = json.loads(res.stdout)
    skipped = {Path(s["path"]).name: s["reason"] for s in rep["skipped"]}
    assert skipped == {
        "locked.pdf": "encrypted PDF: it needs a password to open",
        "truncated.pdf": skipped["truncated.pdf"], "empty.pdf": "empty file (0 bytes)",
        "notpdf.pdf": "damaged PDF (PDFium cannot open it)",
        "truncated.docx": skipped["truncated.docx"],
        "bomb.docx": "Word file: word/document.xml inflates to more than 32 MB (a zip bomb, or too large to index)",
        "bomb.epub": "EPUB: OEBPS/a.xhtml inflates to more than 64 MB (a zip bomb, or too large to index)",
        "cyclic.epub": "damaged EPUB: no package document (.opf)",
        "noise.srt": "no subtitle cues (no 'start --> end' time lines with text)",
        "bad.odt": skipped["bad.odt"],
    }, skipped
    assert skipped["truncated.docx"].startswith("damaged Word file") and skipped["bad.odt"].startswith("damaged OpenDocument")
    assert skipped["truncated.pdf"].startswith(("damaged PDF", "no text or pictures"))
    st = Store(tmp_path / "idx", readonly=True)
    rows = st.catalog.files()
    indexed = {Path(p).name for p, r in rows.items() if r.status == "indexed"}
    assert indexed == {"open-locked.pdf", "bad-xref.pdf", "scripty.html"}
    for name in ("open-locked.pdf", "bad-xref.pdf"):
        pages = {it.locator.get("page") for it in st.catalog.items_of_file(rows[str(d / name)].id)}
        assert pages == {1, 2, 3}, name
    st.close()
    assert rep["files_new"] + len(skipped) == len(list(d.iterdir()))


def test_zip_bombs_cost_bounded_memory(tmp_path):
    """Two members inflating to 300 MB each (as a string and an XML tree: gigabytes): refused after reading at
    most the member cap; the decoding process grows by far less than one bomb."""
    bombs = [zip_bomb(tmp_path / "b.docx", "word/document.xml", 300 << 20),
             zip_bomb(tmp_path / "b.odt", "content.xml", 300 << 20)]
    code = f"""
import resource
from mmretrieval.documents import blocks, format_of
from mmretrieval.errors import DecodeError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for p in {[str(b) for b in bombs]!r}:
    try:
        list(blocks(format_of(p), None, p))
    except DecodeError as e:
        print(e)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    lines = res.stdout.splitlines()
    assert res.returncode == 0 and len(lines) == 3, res.stderr[-2000:]
    assert lines[:2] == ["Word file: word/document.xml inflates to more than 32 MB (a zip bomb, or too large to index)",
                         "OpenDocument file: content.xml inflates to more than 32 MB (a zip bomb, or too large to index)"]
    assert int(lines[2]) < 120, lines[2]  # MB grown


def test_fuzzed_pdfs_never_crash_hang_or_print(tmp_path):
    """Random byte damage to a real PDF: every mutant decodes to blocks or a DecodeError, in bounded time, with
    nothing written to the terminal (run in a child so that a crash inside PDFium would show as one)."""
    good = sample_pdf(tmp_path / "good.pdf")
    code = f"""
import random, sys
from mmretrieval.documents import blocks, format_of, Figure
from mmretrieval.errors import DecodeError
data = open({str(good)!r}, "rb").read()
rng = random.Random(7)
ok = refused = 0
for i in range(150):
    b = bytearray(data)
    for _ in range(rng.randint(1, 40)):
        b[rng.randrange(len(b))] = rng.randrange(256)
    if i % 5 == 0:
        del b[rng.randrange(len(b)):]
    try:
        for blk in blocks(format_of("x.pdf"), bytes(b), "x.pdf"):
            if isinstance(blk, Figure):
                try:
                    blk.load()
                except DecodeError:
                    pass
        ok += 1
    except DecodeError:
        refused += 1
print(ok, refused)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stderr == "", res.stderr[-2000:]
    ok, refused = map(int, res.stdout.split())
    assert ok + refused == 150 and ok > 0


def test_a_changed_document_is_re_embedded_and_a_removed_figure_goes(tmp_path, tiny_space_dir):
    d = tmp_path / "docs"
    d.mkdir()
    p = d / "notes.pdf"
    write_pdf(p, [{"lines": ["Version one of the notes."], "images": [(shape_image("red"), (50, 50, 200, 200))]}])
    with mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir)) as eng:
        assert eng.index([d]).added == {"image": 1, "text": 1}
        write_pdf(p, [{"lines": ["Version two of the notes, longer now."]}])
        os.utime(p, (1e9, 2e9))
        rep = eng.index([d])
        assert rep.files_changed == 1
        items = _items(eng, p)
        assert [it.modality for it in items] == ["text"] and "Version two" in items[0].text
        assert eng.index([d]).items_added == 0
        assert eng.check()["consistent"]


def test_a_new_format_is_one_module_and_a_registry_entry(tmp_path, tiny_space_dir):
    from mmretrieval.documents import DocumentFormat, Text, register_format
    from mmretrieval.documents.base import _FORMATS
    from mmretrieval.modalities import base as modality_base

    def read(data, path, limits):
        for n, line in enumerate((data or b"").decode().splitlines(), 1):
            yield Text(line, {"section": f"card {n}"})

    register_format(DocumentFormat(name="cards", extensions=frozenset({".cards"}), read=read))
    modality_base._BY_EXT = None
    try:
        d = tmp_path / "c"
        d.mkdir()
        (d / "deck.cards").write_text("A red apple.\nA green pear.\n")
        with mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir)) as eng:
            assert eng.index([d]).added == {"text": 2}
            assert eng.search("pear", types=["text"], mode="keyword", k=1)[0].locator["section"] == "card 2"
    finally:
        _FORMATS.pop("cards")
        modality_base._BY_EXT = None


def test_limits_bound_pages_and_figures(tmp_path):
    p = write_pdf(tmp_path / "many.pdf", [{"lines": [f"Page {i} says hello."],
                                          "images": [(shape_image("blue"), (10, 10, 100, 100))]} for i in range(12)])
    got = list(blocks(format_of(p), p.read_bytes(), str(p), Limits(max_pages=10, max_figures=4)))
    pages = [b.where["page"] for b in got if hasattr(b, "text") and "page" in getattr(b, "where", {})]
    remarks = [b.text for b in got if type(b).__name__ == "Remark"]
    assert max(pages) == 10 and "read its first 10 of 12 pages" in remarks
    assert sum(type(b).__name__ == "Figure" for b in got) == 4 and "6 picture(s) over the cap of 4 skipped" in remarks


def test_by_meaning_with_the_shipped_space_a_query_finds_the_page_and_a_picture_its_caption(tmp_path):
    """The shipped `tiny` space knows captions of coloured shapes: a PDF with one caption a page and a Word file
    with one a section are found by vector search (text -> page) and by a picture (image -> passage)."""
    from mmretrieval.synth import COLORS, SHAPES

    combos = [(c, s) for c in list(COLORS)[:4] for s in SHAPES[:4]]
    d = tmp_path / "docs"
    d.mkdir()
    write_pdf(d / "shapes.pdf", [{"lines": [f"A {c} {s} on a white background."]} for c, s in combos])
    with mmr.Engine(tmp_path / "idx", model="tiny") as eng:
        eng.index([d])
        found = 0
        for page, (c, s) in enumerate(combos, 1):
            hit = eng.search(f"a {c} {s}", types=["text"], k=1)[0]
            found += hit.locator["page"] == page
            q = tmp_path / "q.png"
            shape_image(c, s).save(q)
            found += eng.search(image=str(q), types=["text"], k=1)[0].locator["page"] == page
        assert found >= 0.8 * 2 * len(combos), found


def test_the_ocr_engine_is_the_first_installed_or_the_one_asked_for(monkeypatch):
    monkeypatch.delenv("MMR_OCR_ENGINE", raising=False)
    first = next((n for n, m in ocr.ENGINES.items() if importlib.util.find_spec(m) is not None), None)
    assert ocr.engine() == first and ocr.available() == (first is not None)
    monkeypatch.setenv("MMR_OCR_ENGINE", "tesseract")
    with pytest.raises(mmr.DecodeError, match="one of pp-ocrv6, pp-ocrv4"):
        ocr.engine()


def test_real_epub_and_html_from_another_project(tmp_path):
    """Files nobody here made (tests/realworld/SOURCES.md): epub.js's Alice, an EPUB 3 with 27 illustrations, becomes
    passages that know their chapter and section and figures that keep their captions; the title-page-only EPUB
    gives its one passage; an HTML page of prose is read; a page that is only a script is skipped with a reason."""
    folder = Path(__file__).parent / "realworld" / "epubjs"
    with mmr.Engine(tmp_path / "idx", model="tiny") as eng:  # the shipped space: its text tower reads meaning
        report = eng.index([folder])
        assert [(Path(p).name, why) for p, why in report.skipped] == [
            ("examples-toc.html", "no text or pictures in this HTML file")]
        rows = list(eng.store.catalog.items(eng.store.catalog.item_ids().tolist()).values())
        alice = [r for r in rows if Path(r.path).name == "alice.epub"]
        figures = [r for r in alice if r.modality == "image"]
        assert len(figures) == 27 and sum(r.modality == "text" for r in alice) > 700
        assert {"Down The Rabbit-Hole", "The Pool Of Tears", "Alice's Evidence"} <= {r.locator["section"] for r in alice}
        assert any(r.locator.get("alt") == "Alice in the Room of the Duchess." for r in figures)
        assert [r.text.split("\n")[0] for r in rows if Path(r.path).name == "alice_without_cover.epub"] == [
            "Alice's Adventures In Wonderland"]
        assert any("two pages at a time" in r.text for r in rows if Path(r.path).name == "examples-index.html")
        hits = eng.search("the White Rabbit read out the verses", types=["text"], k=3)
        assert Path(hits[0].path).name == "alice.epub" and "White Rabbit" in hits[0].text
