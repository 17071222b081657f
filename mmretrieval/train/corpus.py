"""A generated multimodal corpus, deterministic from a seed: shapes and sounds with varied captions.

Images vary shape, colour, size, position, background and count; sounds vary timbre, pitch, contour
and rhythm. Each item has several caption paraphrases and a `label` (the attributes a retrieval hit
must share: shape+colour for images, timbre+pitch+contour for audio). Train and held-out splits use
disjoint seeds.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..synth import COLORS, SHAPES, draw_shape

COLOR_WORDS = {
    "red": ["red", "crimson", "scarlet"], "green": ["green", "emerald", "lime green"],
    "blue": ["blue", "navy blue", "azure"], "yellow": ["yellow", "golden", "lemon yellow"],
    "orange": ["orange", "tangerine", "amber"], "purple": ["purple", "violet", "lilac"],
    "black": ["black", "jet black", "ebony"], "white": ["white", "snow white", "ivory"],
}
SHAPE_WORDS = {
    "circle": ["circle", "disc", "round dot"], "square": ["square", "box", "block"],
    "triangle": ["triangle", "three-sided shape", "wedge"], "star": ["star", "five-pointed star", "starburst"],
    "cross": ["cross", "plus sign", "cross mark"], "ring": ["ring", "hoop", "donut"],
}
PLURAL = {"circle": "circles", "disc": "discs", "round dot": "round dots", "square": "squares", "box": "boxes",
          "block": "blocks", "triangle": "triangles", "three-sided shape": "three-sided shapes", "wedge": "wedges",
          "star": "stars", "five-pointed star": "five-pointed stars", "starburst": "starbursts", "cross": "crosses",
          "plus sign": "plus signs", "cross mark": "cross marks", "ring": "rings", "hoop": "hoops", "donut": "donuts"}
BACKGROUNDS = {"white": (255, 255, 255), "grey": (150, 150, 150), "dark": (45, 45, 55), "beige": (235, 222, 190),
               "light blue": (200, 225, 245)}
BG_WORDS = {"white": "white", "grey": "grey", "dark": "dark", "beige": "beige", "light blue": "pale blue"}
SIZES = {"small": 0.4, "medium": 0.6, "large": 0.8}
COUNT_WORDS = {1: "one", 2: "two", 3: "three"}
CLASH = {"white": {"white", "beige", "light blue"}, "black": {"dark"}, "yellow": {"beige"}, "blue": {"dark"},
         "purple": {"dark"}, "green": set(), "red": set(), "orange": set()}

TIMBRES = {"sine": ["beep", "pure tone", "whistle"], "square": ["buzz", "buzzy tone", "square wave"],
           "saw": ["sawtooth tone", "harsh tone", "brassy tone"], "noise": ["hiss", "noise", "static"]}
PITCH_HZ = {"low": 220.0, "mid": 660.0, "high": 1760.0}
PITCH_WORDS = {"low": ["low", "deep", "low-pitched"], "mid": ["mid-pitched", "medium", "middle"],
               "high": ["high", "shrill", "high-pitched"]}
CONTOUR_WORDS = {"steady": ["steady", "constant", "flat"], "rising": ["rising", "upward", "ascending"],
                 "falling": ["falling", "downward", "descending"]}
RHYTHM_WORDS = {"continuous": ["continuous", "unbroken", "sustained"], "pulsing": ["pulsing", "beeping", "stuttering"]}

IMAGE_TEMPLATES = [
    "a {color} {shape}", "a {size} {color} {shape}", "{count} {color} {shapes}",
    "a {color} {shape} on a {bg} background", "a picture of a {color} {shape}",
    "a drawing of {count} {color} {shapes} on {bg}", "{color} {shape}, {size}", "an image showing a {color} {shape}",
]
AUDIO_TEMPLATES = [
    "a {pitch} {contour} {noun}", "a {noun} that is {pitch} and {contour}", "a {rhythm} {pitch} {noun}, {contour}",
    "the sound of a {pitch} {noun} going {contour}", "{pitch} {contour} {noun}", "a {contour} {rhythm} {pitch} {noun}",
]


@dataclass
class Sample:
    path: str
    label: str
    captions: list[str]
    attrs: dict[str, str]


def _pick(rng: np.random.Generator, xs):
    return xs[int(rng.integers(len(xs)))]


def draw_shapes(shape: str, color: str, bg: str, size: str, count: int, rng: np.random.Generator,
                canvas: int = 96) -> Image.Image:
    img = Image.new("RGB", (canvas, canvas), BACKGROUNDS[bg])
    d = ImageDraw.Draw(img)
    scale = SIZES[size] / (1.0 if count == 1 else 1.5)
    r = scale * canvas / 2
    centers = []
    for _ in range(count):
        for _attempt in range(20):
            c = rng.uniform(r + 1, canvas - r - 1, 2)
            if all(np.hypot(*(c - o)) > 1.6 * r for o in centers):
                break
        centers.append(c)
    fill = tuple(int(np.clip(v + rng.integers(-15, 16), 0, 255)) for v in COLORS[color])
    for cx, cy in centers:
        draw_shape(d, shape, cx, cy, r, fill)
    return img


def image_captions(shape: str, color: str, bg: str, size: str, count: int, rng: np.random.Generator,
                   n: int = 4) -> list[str]:
    out = []
    for t in rng.permutation(len(IMAGE_TEMPLATES))[:n]:
        sw = _pick(rng, SHAPE_WORDS[shape])
        out.append(IMAGE_TEMPLATES[t].format(color=_pick(rng, COLOR_WORDS[color]), shape=sw, shapes=PLURAL[sw]
                                             if count > 1 else sw, size=size, bg=BG_WORDS[bg],
                                             count=COUNT_WORDS[count]).replace("one ", "a ", 1 if count == 1 else 0))
    return out


def synth_sound(timbre: str, pitch: str, contour: str, rhythm: str, rng: np.random.Generator, seconds: float = 2.0,
                sr: int = 16000) -> np.ndarray:
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = PITCH_HZ[pitch] * rng.uniform(0.92, 1.08)
    glide = rng.uniform(1.6, 2.2)
    if contour == "rising":
        f = f0 / np.sqrt(glide) * glide ** (t / seconds)
    elif contour == "falling":
        f = f0 * np.sqrt(glide) * glide ** (-t / seconds)
    else:
        f = np.full(n, f0)
    phase = 2 * np.pi * np.cumsum(f) / sr
    if timbre == "sine":
        x = np.sin(phase)
    elif timbre == "square":
        x = np.sign(np.sin(phase)) * 0.6
    elif timbre == "saw":
        x = 2 * ((phase / (2 * np.pi)) % 1.0) - 1
        x *= 0.6
    else:  # band-limited noise that follows the pitch: a narrow band around f
        noise = rng.standard_normal(n)
        carrier = np.sin(phase)
        from scipy.signal import butter, sosfilt

        sos = butter(2, 80 / (sr / 2), btype="low", output="sos")
        x = sosfilt(sos, noise) * 8 * carrier + 0.05 * noise
    if rhythm == "pulsing":
        rate = rng.uniform(3.0, 6.0)
        x = x * (np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)) > -0.2)
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
    x = x * fade * rng.uniform(0.2, 0.5) / max(np.abs(x).max(), 1e-6)
    return x.astype(np.float32)


def audio_captions(timbre: str, pitch: str, contour: str, rhythm: str, rng: np.random.Generator, n: int = 4) -> list[str]:
    return [AUDIO_TEMPLATES[t].format(noun=_pick(rng, TIMBRES[timbre]), pitch=_pick(rng, PITCH_WORDS[pitch]),
                                      contour=_pick(rng, CONTOUR_WORDS[contour]), rhythm=_pick(rng, RHYTHM_WORDS[rhythm]))
            for t in rng.permutation(len(AUDIO_TEMPLATES))[:n]]


def generate(out: str | Path, *, seed: int, images_per_class: int, sounds_per_class: int, sr: int = 16000,
             canvas: int = 96) -> dict[str, Path]:
    """Write images, sounds and pairs files under `out`; returns the pairs files' paths."""
    import soundfile as sf

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "sounds").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    img_rows, aud_rows = [], []
    for shape in SHAPES:
        for color in COLORS:
            for i in range(images_per_class):
                bg = _pick(rng, [b for b in BACKGROUNDS if b not in CLASH[color]])
                size = _pick(rng, list(SIZES))
                count = int(_pick(rng, [1, 1, 1, 2, 3]))
                p = out / "images" / f"{color}-{shape}-{i:03d}.png"
                draw_shapes(shape, color, bg, size, count, rng, canvas).save(p)
                caps = image_captions(shape, color, bg, size, count, rng)
                img_rows.append({"image": str(p.relative_to(out)), "captions": caps, "label": f"{color} {shape}",
                                 "attrs": {"shape": shape, "color": color, "bg": bg, "size": size, "count": count}})
    for timbre in TIMBRES:
        for pitch in PITCH_HZ:
            for contour in CONTOUR_WORDS:
                for i in range(sounds_per_class):
                    rhythm = _pick(rng, list(RHYTHM_WORDS))
                    p = out / "sounds" / f"{timbre}-{pitch}-{contour}-{i:03d}.wav"
                    sf.write(p, synth_sound(timbre, pitch, contour, rhythm, rng, sr=sr), sr)
                    caps = audio_captions(timbre, pitch, contour, rhythm, rng)
                    aud_rows.append({"audio": str(p.relative_to(out)), "captions": caps,
                                     "label": f"{timbre} {pitch} {contour}",
                                     "attrs": {"timbre": timbre, "pitch": pitch, "contour": contour, "rhythm": rhythm}})
    files = {}
    with open(out / "pairs.jsonl", "w") as f:  # both modalities, for `mmr eval`
        for r in img_rows + aud_rows:
            key = "image" if "image" in r else "audio"
            for c in r["captions"]:
                f.write(json.dumps({key: r[key], "caption": c, "label": r["label"]}) + "\n")
    files["pairs.jsonl"] = out / "pairs.jsonl"
    for name, rows, key in (("image_pairs.jsonl", img_rows, "image"), ("audio_pairs.jsonl", aud_rows, "audio")):
        with open(out / name, "w") as f:
            for r in rows:
                for c in r["captions"]:
                    f.write(json.dumps({key: r[key], "caption": c, "label": r["label"]}) + "\n")
        files[name] = out / name
    # caption–caption paraphrase pairs (two captions of one item): they teach the text tower that
    # differently worded descriptions of one thing mean the same, for the audio vocabulary too.
    with open(out / "text_pairs.jsonl", "w") as f:
        for r in img_rows + aud_rows:
            c = r["captions"]
            for a, b in zip(c, c[1:] + c[:1]):
                f.write(json.dumps({"caption": a, "caption2": b, "label": r["label"]}) + "\n")
    files["text_pairs.jsonl"] = out / "text_pairs.jsonl"
    # text passages describing the items, for document search
    with open(out / "descriptions.md", "w") as f:
        for r in img_rows[::7]:
            f.write(f"{r['captions'][0].capitalize()}.\n")
        for r in aud_rows[::5]:
            f.write(f"{r['captions'][0].capitalize()}.\n")
    return files


def keyword_corpus(out: str | Path, *, seed: int, n: int = 300) -> list[dict]:
    """Text documents whose queries hinge on rare exact terms: each describes a shape (words the `tiny` text
    tower knows) and carries an order code and a customer's name (words it has never seen). Writes `n` files
    under `out` and returns the queries: "exact" ones (a code, or a name and code) with the one document they
    name, and "meaning" ones (another wording of a description, no code) with the documents of that
    description."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    first = ["Marta", "Kofi", "Ines", "Tomasz", "Yuki", "Aarav", "Leila", "Bram", "Sione", "Dagny", "Emeka", "Rosa"]
    last = ["Okonkwo", "Lindqvist", "Haddad", "Nakamura", "Ferreira", "Kowalczyk", "Abara", "Van Dijk", "Moreau"]
    docs, queries = [], []
    for i in range(n):
        shape, color = _pick(rng, list(SHAPE_WORDS)), _pick(rng, list(COLOR_WORDS))
        bg, size = _pick(rng, [b for b in BACKGROUNDS if b not in CLASH[color]]), _pick(rng, list(SIZES))
        caps = image_captions(shape, color, bg, size, 1, rng, n=2)
        code = f"{chr(65 + rng.integers(26))}{chr(65 + rng.integers(26))}-{rng.integers(1000, 10000)}"
        name = f"{_pick(rng, first)} {_pick(rng, last)}"
        name_doc = f"doc{i:04d}.txt"
        (out / name_doc).write_text(f"Order {code} for {name}: {caps[0]}.\n")
        docs.append({"file": name_doc, "label": f"{color} {shape}", "code": code, "name": name, "other": caps[1]})
    for d in docs:
        queries.append({"kind": "exact", "query": d["code"], "relevant": [d["file"]]})
        queries.append({"kind": "exact", "query": f"{d['name']} order {d['code']}", "relevant": [d["file"]]})
    labels: dict[str, list[str]] = {}
    for d in docs:
        labels.setdefault(d["label"], []).append(d["file"])
    for d in docs[: n // 2]:
        queries.append({"kind": "meaning", "query": d["other"], "relevant": labels[d["label"]]})
    return queries
