"""Deterministic synthetic media: shapes in colours, tones with pitch and contour, and their captions.

Used by the demo script and the tests (and the seed of the training corpus): everything is made
from a seed, so the same call always gives the same files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "green": (30, 180, 60), "blue": (30, 60, 220), "yellow": (240, 220, 40),
    "orange": (245, 140, 20), "purple": (140, 50, 180), "black": (20, 20, 20), "white": (250, 250, 250),
}
SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")
PITCHES = {"low": 220.0, "mid": 660.0, "high": 1760.0}


def shape_image(color: str, shape: str = "circle", size: int = 64, bg: tuple[int, int, int] = (255, 255, 255),
                scale: float = 0.66, center: tuple[float, float] = (0.5, 0.5)) -> Image.Image:
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    r = scale * size / 2
    cx, cy = center[0] * size, center[1] * size
    draw_shape(d, shape, cx, cy, r, COLORS[color])
    return img


def draw_shape(d: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill: tuple[int, ...]) -> None:
    """Draw one shape of radius `r` centred at (cx, cy)."""
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        d.ellipse(box, fill=fill)
    elif shape == "square":
        d.rectangle(box, fill=fill)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
    elif shape == "star":
        pts = [(cx + (r if i % 2 == 0 else 0.45 * r) * np.cos(np.pi / 2 + i * np.pi / 5),
                cy - (r if i % 2 == 0 else 0.45 * r) * np.sin(np.pi / 2 + i * np.pi / 5)) for i in range(10)]
        d.polygon(pts, fill=fill)
    elif shape == "cross":
        w = r / 3
        d.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
        d.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
    elif shape == "ring":
        d.ellipse(box, outline=fill, width=max(2, int(r / 3)))
    else:
        raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}")


def scene_image(seed: int, color: str, shape: str, center: tuple[float, float] = (0.5, 0.5), size: int = 224,
                scale: float = 0.35) -> Image.Image:
    """A shape in front of a background of its own (a colour gradient and blocks, fixed by `seed`): shots of one
    scene with the object moved keep their background, as burst photos do."""
    rng = np.random.default_rng(seed)
    c0, c1 = rng.integers(60, 200, 3), rng.integers(60, 200, 3)
    ramp = np.linspace(0.0, 1.0, size)[:, None, None]
    bg = (c0 * (1 - ramp) + c1 * ramp).repeat(size, axis=1).astype(np.uint8)
    img = Image.fromarray(bg, "RGB")
    d = ImageDraw.Draw(img)
    for _ in range(6):
        x, y = rng.integers(0, size, 2)
        w, h = rng.integers(size // 10, size // 3, 2)
        d.rectangle((int(x), int(y), int(x + w), int(y + h)), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw_shape(d, shape, center[0] * size, center[1] * size, scale * size / 2, COLORS[color])
    return img


def tone(freq: float, seconds: float, sr: int = 16000, contour: str = "steady", pulsing: bool = False) -> np.ndarray:
    """A sine tone; `contour` steady/rising/falling glides an octave; `pulsing` gates it at 4 Hz."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    if contour == "rising":
        f = freq * (2.0 ** (t / seconds))
    elif contour == "falling":
        f = freq * (2.0 ** (-t / seconds))
    elif contour == "steady":
        f = np.full(n, freq)
    else:
        raise ValueError(f"unknown contour {contour!r}; valid: steady, rising, falling")
    x = 0.3 * np.sin(2 * np.pi * np.cumsum(f) / sr)
    if pulsing:
        x *= (np.sin(2 * np.pi * 4 * t) > 0).astype(np.float64)
    return x.astype(np.float32)


def write_demo_folder(root: str | Path, seed: int = 0) -> Path:
    """A small folder of images, sounds and a document describing them."""
    import soundfile as sf

    root = Path(root)
    for sub in ("images", "sounds", "docs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for color in ("red", "green", "blue", "yellow"):
        for shape in ("circle", "square", "triangle"):
            img = shape_image(color, shape, size=224, center=tuple(rng.uniform(0.4, 0.6, 2)))
            img.save(root / "images" / f"{color}-{shape}.png")
            lines.append(f"A {color} {shape} on a white background.")
    for pitch, freq in PITCHES.items():
        for contour in ("steady", "rising", "falling"):
            sf.write(root / "sounds" / f"{pitch}-{contour}.wav", tone(freq, 3.0, contour=contour), 16000)
            lines.append(f"A {pitch} {contour} beep.")
    (root / "docs" / "captions.md").write_text("# What is in this folder\n\n" + "\n".join(lines) + "\n")
    return root


def write_dupes_set(root: str | Path, scenes: int = 12, sounds: int = 6, seed: int = 0) -> dict[str, list]:
    """A folder of originals, their transformed copies and distinct near neighbours, with the truth.

    Pictures: each scene as a PNG, then a JPEG at quality 60, a half-size PNG, a 5 % crop, a PNG 5 % brighter, one
    5 % darker and a byte-for-byte copy (its group); its burst shot (the object moved) and the same scene with the
    object in another colour (near neighbours, not copies). Sounds: each tone as a 44.1 kHz WAV, then as FLAC,
    resampled to 22.05 kHz, and as stereo (its group); the same tone an octave up (a neighbour). Texts: one
    paragraph in two documents (a group) and a paraphrase of it (a neighbour). Returns {"groups": [[paths]],
    "neighbours": [paths]}: every path of a group is a copy of the others; no neighbour is a copy of anything."""
    import io
    import shutil

    import soundfile as sf
    from PIL import ImageEnhance

    root = Path(root)
    for sub in ("images", "sounds", "docs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    groups: list[list[str]] = []
    neighbours: list[str] = []
    colors = list(COLORS)
    for i in range(scenes):
        color, shape = colors[i % len(colors)], SHAPES[i % len(SHAPES)]
        center = (float(rng.uniform(0.3, 0.6)), float(rng.uniform(0.3, 0.7)))
        img = scene_image(seed * 1000 + i, color, shape, center)
        d = root / "images"
        base = d / f"scene{i:02d}.png"
        img.save(base)
        w, h = img.size
        c = int(round(w * 0.05 / 2))
        copies = {
            "q60.jpg": lambda im: im, "half.png": lambda im: im.resize((w // 2, h // 2)),
            "crop.png": lambda im: im.crop((c, c, w - c, h - c)),
            "bright.png": lambda im: ImageEnhance.Brightness(im).enhance(1.05),
            "dark.png": lambda im: ImageEnhance.Brightness(im).enhance(0.95)}
        group = [str(base)]
        for suffix, make in copies.items():
            out = d / f"scene{i:02d}-{suffix}"
            if suffix.endswith(".jpg"):
                buf = io.BytesIO()
                img.save(buf, "JPEG", quality=60)
                out.write_bytes(buf.getvalue())
            else:
                make(img).save(out)
            group.append(str(out))
        shutil.copyfile(base, d / f"scene{i:02d}-copy.png")
        group.append(str(d / f"scene{i:02d}-copy.png"))
        groups.append(group)
        moved = (center[0] + 0.12, center[1])
        scene_image(seed * 1000 + i, color, shape, moved).save(d / f"scene{i:02d}-burst.png")
        other = colors[(i + 3) % len(colors)]
        scene_image(seed * 1000 + i, other, shape, center).save(d / f"scene{i:02d}-recolour.png")
        neighbours += [str(d / f"scene{i:02d}-burst.png"), str(d / f"scene{i:02d}-recolour.png")]
    for i in range(sounds):
        import librosa

        freq = 250.0 * 2 ** (i / max(sounds, 12))  # a semitone apart or more: no tone is another's octave
        contour = ("steady", "rising", "falling")[i % 3]
        wave = tone(freq, 3.0, sr=44100, contour=contour, pulsing=bool(i % 2))
        d = root / "sounds"
        sf.write(d / f"tone{i:02d}.wav", wave, 44100)
        sf.write(d / f"tone{i:02d}-copy.flac", wave, 44100)
        sf.write(d / f"tone{i:02d}-22k.wav", librosa.resample(wave, orig_sr=44100, target_sr=22050), 22050)
        sf.write(d / f"tone{i:02d}-stereo.wav", np.stack([wave, wave], axis=1), 44100)
        groups.append([str(d / f"tone{i:02d}{s}") for s in (".wav", "-copy.flac", "-22k.wav", "-stereo.wav")])
        sf.write(d / f"tone{i:02d}-octave.wav", tone(2 * freq, 3.0, sr=44100, contour=contour, pulsing=bool(i % 2)),
                 44100)
        neighbours.append(str(d / f"tone{i:02d}-octave.wav"))
    paragraph = ("The lighthouse keeper climbed the spiral stairs every evening at dusk, trimmed the wick, polished "
                 "the great lens and watched the ships pass the rocks until the sun came up again.")
    paraphrase = ("Each night as darkness fell, the man who tended the light went up the winding steps, cleaned "
                  "the huge glass and kept watch over passing vessels near the reef till morning.")
    d = root / "docs"
    (d / "keeper.txt").write_text(paragraph + "\n")
    (d / "keeper-notes.md").write_text(paragraph.upper().replace(",", " ,") + "\n")
    (d / "keeper-retold.txt").write_text(paraphrase + "\n")
    groups.append([str(d / "keeper.txt"), str(d / "keeper-notes.md")])
    neighbours.append(str(d / "keeper-retold.txt"))
    return {"groups": groups, "neighbours": neighbours}
