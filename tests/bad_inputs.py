"""A folder of bad and odd inputs, each with what the indexer must do with it.

`make_bad_folder(root)` returns {relative path: expectation}; an expectation is "ok" (indexed) or a
regular expression the skip reason must match.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from mmretrieval.synth import shape_image, tone


def _wav_header_only(path: Path) -> None:
    path.write_bytes(b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
                     + b"data" + struct.pack("<I", 0))


def make_bad_folder(root: Path, *, hour_long: bool = True) -> dict[str, str]:
    root.mkdir(parents=True, exist_ok=True)
    exp: dict[str, str] = {}

    def put(name: str, expectation: str) -> Path:
        exp[name] = expectation
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    good = shape_image("red", size=96)
    # --- images
    put("zero.jpg", "0 bytes").write_bytes(b"")
    data = _jpeg_bytes(good)
    put("truncated.jpg", "corrupt|truncated|not a recognised").write_bytes(data[: len(data) // 4])
    png = root / "_tmp.png"
    good.save(png)
    pdata = png.read_bytes()
    png.unlink()
    put("truncated.png", "corrupt|truncated|not a recognised").write_bytes(pdata[: len(pdata) // 2])
    put("text-named.jpg", "not a recognised image").write_text("hello, I am text\n")
    put("jpeg-named.png", "ok").write_bytes(data)
    Image.new("L", (1, 1), 128).save(put("one-pixel.png", "ok"))
    big = Image.new("1", (20000, 12000))  # 240 MP, a few KB as PNG: a decompression bomb
    big.save(put("bomb.png", "too large"), optimize=True)
    good.convert("CMYK").save(put("cmyk.jpg", "ok"))
    Image.fromarray((np.arange(96 * 96).reshape(96, 96) * 7).astype(np.uint16)).save(put("grey16.png", "ok"))
    pal = good.convert("P")
    pal.info["transparency"] = 0
    pal.save(put("palette-transparent.png", "ok"), transparency=0)
    good.convert("LA").save(put("la.png", "ok"))
    frames = [shape_image(c, size=64) for c in ("red", "blue", "green")]
    frames[0].save(put("anim.gif", "ok"), save_all=True, append_images=frames[1:], duration=80, loop=0)
    frames[0].save(put("anim.webp", "ok"), save_all=True, append_images=frames[1:], duration=80, loop=0)
    # --- audio
    put("zero.wav", "0 bytes").write_bytes(b"")
    put("corrupt.wav", "cannot decode audio").write_bytes(b"RIFF\x10\x00\x00\x00WAVEgarbagegarbage" * 3)
    _wav_header_only(put("header-only.wav", "too short|cannot decode"))
    sf.write(put("silent.wav", "ok"), np.zeros(8000 * 2, np.float32), 8000)
    sf.write(put("tiny-0.05s.wav", "ok"), tone(440, 0.05, 8000), 8000)
    sf.write(put("too-short-0.01s.wav", "too short"), tone(440, 0.01, 8000), 8000)
    sf.write(put("rate-8k.wav", "ok"), tone(300, 1.0, 8000), 8000)
    sf.write(put("rate-96k.flac", "ok"), tone(300, 1.0, 96000), 96000)
    sf.write(put("six-channels.wav", "ok"), np.stack([tone(200 + 50 * c, 1.0, 16000) for c in range(6)], 1), 16000)
    sf.write(put("stereo.ogg", "ok"), np.stack([tone(300, 1.0, 22050)] * 2, 1), 22050, format="OGG")
    if hour_long:
        sf.write(put("hour-long.flac", "ok"), np.tile(tone(220, 1.0, 8000), 3600), 8000)
    # --- text
    put("binary.txt", "binary").write_bytes(os.urandom(4096))
    put("utf16.txt", "ok").write_text("A red circle, in UTF-16 with a BOM.\n", encoding="utf-16")
    put("latin1.txt", "ok").write_bytes("Café crème: a brown circle, in Latin-1.\n".encode("latin-1"))
    put("empty.txt", "0 bytes").write_bytes(b"")
    put("whitespace.md", "no text").write_text("   \n\t\n  \n")
    put("one-long-line.txt", "ok").write_text(("word " * 20000).strip())
    # --- names
    for name in ("with space.png", "ünïcödé-名前.png", "new\nline.png", "-leading-dash.png", "--help.png"):
        good.save(put(name, "ok"))
    return exp


def _jpeg_bytes(img: Image.Image) -> bytes:
    import io

    b = io.BytesIO()
    img.save(b, format="JPEG", quality=90)
    return b.getvalue()
