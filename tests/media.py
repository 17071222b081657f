"""Generate small media folders for tests: images in many modes, audio in several formats, text, bad files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from mmretrieval.synth import shape_image  # noqa: F401 (re-exported for the tests)
from mmretrieval.synth import tone as _tone


def tone(freq: float, seconds: float, sr: int = 8000) -> np.ndarray:
    return _tone(freq, seconds, sr)


def make_media(root: Path) -> dict[str, Path]:
    """A mixed folder; returns name -> path of the notable files."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "photos").mkdir(exist_ok=True)
    (root / "sounds").mkdir(exist_ok=True)
    (root / "docs").mkdir(exist_ok=True)
    f: dict[str, Path] = {}
    for c in ("red", "green", "blue", "yellow"):
        f[c] = root / "photos" / f"{c}.png"
        shape_image(c).save(f[c])
    f["jpeg"] = root / "photos" / "square.jpg"
    shape_image("blue", "square").save(f["jpeg"], quality=90)
    f["rgba"] = root / "photos" / "rgba.png"
    shape_image("red").convert("RGBA").save(f["rgba"])
    f["la"] = root / "photos" / "la.png"
    shape_image("green").convert("LA").save(f["la"])
    f["cmyk"] = root / "photos" / "cmyk.jpg"
    shape_image("yellow").convert("CMYK").save(f["cmyk"])
    f["gif"] = root / "photos" / "anim.gif"
    frames = [shape_image("red"), shape_image("blue")]
    frames[0].save(f["gif"], save_all=True, append_images=frames[1:], duration=100, loop=0)
    f["i16"] = root / "photos" / "grey16.png"
    Image.fromarray((np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)).save(f["i16"])
    f["wav"] = root / "sounds" / "low.wav"
    sf.write(f["wav"], tone(220, 1.5), 8000)
    f["flac"] = root / "sounds" / "high.flac"
    sf.write(f["flac"], tone(1760, 1.0, 16000), 16000)
    f["ogg"] = root / "sounds" / "long.ogg"
    sf.write(f["ogg"], np.stack([tone(440, 5.0, 22050), tone(660, 5.0, 22050)], axis=1), 22050, format="OGG")
    f["doc"] = root / "docs" / "notes.md"
    f["doc"].write_text("# Notes\n\nA red circle sits on a white page. " * 3
                        + "\n\nThe blue square is below it.\nA low tone hums in the background.\n")
    f["short"] = root / "docs" / "short.txt"
    f["short"].write_text("A yellow circle.")
    # bad files
    f["bad_jpg"] = root / "photos" / "not-an-image.jpg"
    f["bad_jpg"].write_text("this is text, not a JPEG")
    f["empty"] = root / "photos" / "empty.png"
    f["empty"].write_bytes(b"")
    f["trunc"] = root / "photos" / "truncated.jpg"
    data = f["jpeg"].read_bytes()
    f["trunc"].write_bytes(data[: len(data) // 3])
    f["bad_wav"] = root / "sounds" / "corrupt.wav"
    f["bad_wav"].write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    f["binary_txt"] = root / "docs" / "binary.txt"
    f["binary_txt"].write_bytes(bytes(range(256)) * 8)
    return f
