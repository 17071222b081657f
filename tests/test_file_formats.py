"""Files as they come: every image format Pillow decodes, audio in the common containers, legacy text
encodings, high bit depths, odd TIFFs, huge documents, library chatter, and terminals that must not
receive a file's control characters. Generated here; tests/test_real_world_files.py runs the same
contract on files other projects made."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import mmretrieval as mmr
from mmretrieval.cli import main
from mmretrieval.encoders.pixels import load_image, to_rgb
from mmretrieval.documents.plain import decode_text_bytes
from mmretrieval.modalities.text import MAX_MACHINE_PASSAGES
from mmretrieval.synth import shape_image, tone

SENTENCES = {
    "big5": "維基大典者，網路為礎；集天下知、四海言、眾人志，書百科焉。此文為測試而作。",
    "koi8_r": "В гимназии он не был в числе первых учеников. Он любил читать книги о дальних странах.",
    "cp1255": "העברית היא שפה המשתייכת לקבוצת הלשונות השמיות. היא נכתבת מימין לשמאל.",
    "shift_jis": "ある日の暮方の事である。一人の下人が、羅生門の下で雨やみを待っていた。広い門の下には、この男のほかに"
                 "誰もいない。ただ、所々丹塗の剥げた、大きな円柱に、蟋蟀が一匹とまっている。羅生門が、朱雀大路にある以上は、"
                 "この男のほかにも、雨やみをする市女笠や揉烏帽子が、もう二三人はありそうなものである。",
    "iso2022_jp": "はれひほふ。しているのが、いるので。今日は良い天気です。",
    "iso2022_kr": "북조선 사람들은 흔히 자국을 조선이나 공화국이라고 부른다. 이 글은 시험용이다.",
    "utf-32-le": "DateTime,Bid,Ask\n07/19/2015 21:00:15.46,1.0,1.1\nA plain table of prices.",
    "utf-16-be": "Commit summary. This file includes some text in UTF-16 without a byte-order mark.",
}


@pytest.mark.parametrize("encoding", sorted(SENTENCES))
def test_legacy_encodings_are_read_as_what_the_text_says(encoding):
    text = SENTENCES[encoding] * 3
    got, enc = decode_text_bytes(text.encode(encoding))
    assert got == text
    assert enc.replace("-", "_").replace("_", "") in {encoding.replace("-", "").replace("_", ""),
                                                      "cp932" if encoding == "shift_jis" else "",
                                                      "cp950" if encoding == "big5" else ""}


def test_binary_named_txt_is_still_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(mmr.DecodeError, match="binary data"):
        decode_text_bytes(rng.integers(0, 256, 64, dtype=np.uint8).tobytes())


def test_every_pillow_format_and_audio_container_is_indexed_and_the_rest_counted(tmp_path, tiny_space_dir, capsys):
    d = tmp_path / "media"
    d.mkdir()
    img = shape_image("red", "circle", size=64)
    for ext, kw in [(".ico", {}), (".jp2", {}), (".pbm", {}), (".pgm", {}), (".tga", {}), (".pcx", {}),
                    (".sgi", {}), (".qoi", {}), (".avif", {}), (".dds", {}), (".webp", {})]:
        im = img.convert("1") if ext == ".pbm" else img.convert("L") if ext == ".pgm" else img
        im.save(d / f"pic{ext}", **kw)
    import av

    for ext, fmt, codec, rate in [(".m4a", "ipod", "aac", 16000), (".webm", "webm", "libopus", 48000)]:
        with av.open(str(d / f"sound{ext}"), "w", format=fmt) as c:
            s = c.add_stream(codec, rate=rate)
            s.layout = "mono"
            frame = av.AudioFrame.from_ndarray(tone(440, 1.0, rate)[None].astype(np.float32), format="flt",
                                               layout="mono")
            frame.sample_rate = rate
            for p in list(s.encode(frame)) + list(s.encode(None)):
                c.mux(p)
    (d / "report.xlsx").write_bytes(b"PK\x03\x04 not really")
    (d / "setup.exe").write_bytes(b"MZ")
    (d / "more.xlsx").write_bytes(b"PK\x03\x04")
    idx = tmp_path / "idx"
    assert main(["index", str(d), "--index", str(idx), "--model", str(tiny_space_dir), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["skipped"] == [] and rep["added"]["image"] == 11 and rep["added"]["audio"] >= 2
    assert rep["ignored"] == {".xlsx": 2, ".exe": 1}
    assert main(["index", str(d), "--index", str(idx), "-v"]) == 0
    out = capsys.readouterr().out
    assert "ignored 3 file(s) of other types: 2 .xlsx, 1 .exe" in out and str(d / "setup.exe") in out


def test_heic_without_its_plugin_says_what_to_install(tmp_path, monkeypatch):
    import mmretrieval.encoders.pixels as image_mod

    monkeypatch.setattr(image_mod, "pillow_heif", None)
    fake = tmp_path / "IMG_0001.HEIC"
    fake.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    with pytest.raises(mmr.DecodeError, match="heif' extra"):
        load_image(fake)


def test_the_bomb_guard_gives_the_same_answer_every_time_whatever_the_workers(tmp_path, tiny_space_dir):
    """95-MP images lie between Pillow's own warning line (89 MP) and our limit (179 MP): all are indexed,
    in every run, with four decode threads at once (a process-wide warnings filter once made this racy)."""
    d = tmp_path / "big"
    d.mkdir()
    Image.new("L", (9_500, 10_000), 128).save(d / "a.png")
    for i in range(1, 6):  # one trailing byte each: six contents, so none is reused as a copy of another
        (d / f"copy{i}.png").write_bytes((d / "a.png").read_bytes() + bytes([i]))
    for run in range(2):
        eng = mmr.Engine(tmp_path / f"idx{run}", model=str(tiny_space_dir))
        rep = eng.index([d], workers=4)
        assert rep.skipped == [] and rep.added["image"] == 6, rep.skipped


def test_high_bit_depth_grey_is_stretched_the_same_way_whatever_the_storage():
    rng = np.random.default_rng(0)
    px = rng.integers(0, 31, (40, 40)).astype(np.uint16)  # a dim 12-bit scan: values 0..30 of 65535
    as_i16 = Image.fromarray(px)
    as_i = Image.fromarray(px.astype(np.int32))
    as_f = Image.fromarray(px.astype(np.float32))
    assert as_i16.mode == "I;16" and as_i.mode == "I" and as_f.mode == "F"
    a, b, c = (np.asarray(to_rgb(im)) for im in (as_i16, as_i, as_f))
    assert np.array_equal(a, b) and np.array_equal(a, c)
    assert a.max() == 255 and a.mean() > 60  # not black
    mid = np.full((4, 4), 32768, np.uint16)  # real 16-bit data keeps its level, in every storage
    assert {to_rgb(Image.fromarray(x)).getpixel((0, 0))[0] for x in (mid, mid.astype(np.int32),
                                                                      mid.astype(np.float32))} == {128}


def test_tiff_failures_say_what_is_missing():
    from mmretrieval.encoders.pixels import _decode_failure

    im = Image.new("RGB", (4, 4))
    im.format = "TIFF"
    im.info["compression"] = "webp"
    assert _decode_failure(im, OSError("decoder error -2")) == \
        "TIFF with WEBP compression: not supported by this libtiff (Pillow's build)"
    im.info["compression"] = "tiff_lzw"
    assert "corrupt TIFF data (lzw compression)" in _decode_failure(im, OSError("decoder error -2"))


def test_huge_and_machine_generated_documents_are_capped_with_a_note(tmp_path, tiny_space_dir, monkeypatch):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "book.txt").write_text(" ".join(f"Sentence {i} tells of a {i % 7} red fox." for i in range(600)))
    (d / "dump.txt").write_text("key=value;" * 30_000)  # one 300,000-character line
    (d / "note.txt").write_text("A short note.")
    monkeypatch.setenv("MMR_MAX_PASSAGES", "100")
    rep = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir)).index([d])
    notes = {Path(p).name: n for p, n in rep.notes}
    assert set(notes) == {"book.txt", "dump.txt"}
    assert notes["book.txt"].startswith("very long document: indexed its first 100 of ")
    assert notes["dump.txt"].startswith(f"machine-generated text (mostly lines over 2,000 characters, no sentences): "
                                        f"indexed its first {MAX_MACHINE_PASSAGES} of ")
    assert rep.added["text"] == 100 + MAX_MACHINE_PASSAGES + 1


def test_control_characters_never_reach_the_terminal(tmp_path, tiny_space_dir, capsys):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "evil.txt").write_text("A red circle \x1b]0;pwned\x07 on a \x1b[2J white page \u202e with a trick.")
    (d / "jp.txt").write_bytes(SENTENCES["iso2022_jp"].encode("iso2022_jp"))
    idx = tmp_path / "idx"
    assert main(["index", str(d), "--index", str(idx), "--model", str(tiny_space_dir)]) == 0
    capsys.readouterr()
    assert main(["search", "a red circle", "--type", "text", "--index", str(idx)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "\\x1b]0;pwned\\x07" in out and "はれひほふ" in out  # the Japanese document reads as Japanese
    hits = mmr.Engine(idx, readonly=True).search("a", types=["text"], k=5)
    assert {h.locator["encoding"] for h in hits} == {"utf-8", "iso2022_jp"}


def test_library_chatter_goes_to_the_log_not_the_terminal(tmp_path):
    """C code writing to fd 2 from a worker thread, Python warnings and log records, during `mmr index`."""
    script = f"""
import logging, os, sys, threading, warnings
from mmretrieval.quiet import captured_output, count_lines
with captured_output({str(tmp_path / 'messages.log')!r}) as log:
    t = threading.Thread(target=lambda: os.write(2, b"TIFFFetchNormalTag: unknown tag\\n")); t.start(); t.join()
    warnings.warn("Corrupt EXIF data")
    logging.getLogger("PIL.TiffImagePlugin").error("More samples per pixel than can be decoded")
    print("progress bar line", file=sys.stderr)
print(count_lines(log))
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stderr == "progress bar line\n" and p.stdout.strip() == "3"
    log = (tmp_path / "messages.log").read_text()
    assert "TIFFFetchNormalTag" in log and "Corrupt EXIF" in log and "More samples" in log


def test_mmr_index_keeps_stderr_for_the_report_only(tmp_path, tiny_space_dir):
    d = tmp_path / "m"
    d.mkdir()
    shape_image("red").save(d / "ok.png")
    bad = Image.new("RGB", (8, 8))
    exif = bad.getexif()
    exif[0x010F] = "maker"
    bad.save(d / "exif.jpg", exif=exif.tobytes()[:-6])  # truncated EXIF: Pillow warns while decoding
    sf.write(d / "t.wav", tone(440, 0.5, 8000), 8000)
    env = {**os.environ, "MMR_CACHE": str(tmp_path / "cache")}
    p = subprocess.run([sys.executable, "-m", "mmretrieval.cli", "index", str(d), "--index", str(tmp_path / "idx"),
                        "--model", str(tiny_space_dir)], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert "files: 3 new" in p.stdout
