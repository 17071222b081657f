"""Sketches: a small summary of an item's own content that a re-saved copy keeps and a near neighbour does not.

Embedding vectors see meaning: a 5 % crop of a photo and the next shot of a burst are both "the same picture" to
them (CLIP-like towers rate a moved object closer than a crop), and so is a tone an octave up to a weak audio
tower. Near-duplicate review (`collection.dupes`) therefore finds candidates by vector and confirms each pair by
comparing sketches: pixels aligned over small crops, a sound's spectrogram, a passage's words. Each modality
module names its sketch and likeness (`Modality.sketch`, `Modality.likeness`); the functions here are theirs.

Each likeness is in [0, 1]; `LIKENESS` holds the threshold a copy clears, measured by `scripts/bench/dupes.py`
on generated copies and near neighbours (see docs/collection.md).
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

import numpy as np

PICTURE_SIDE = 128  # a sketch's pixels
COMPARE_SIDE = 32   # compared at this size, over windows of either picture
CROPS = (1.0, 0.975, 0.95, 0.925, 0.9)
BLOCKS = 8          # the colour check's grid: 8 x 8 blocks of 4 x 4 pixels  # window sides tried: a copy cropped by up to ~10 % still lines up
SOUND_RATE = 16000
SOUND_SECONDS = 30.0
MEL_BANDS = 128

# Bumped whenever a sketch or likeness changes: likeness kept from an earlier version is computed again.
VERSION = 2

# The likeness a copy reaches (measured; see the module's docstring).
LIKENESS = {"image": 0.85, "audio": 0.95, "text": 0.80}


# ----------------------------------------------------------------- pictures
def picture_sketch(img: Any) -> np.ndarray:
    """The picture's windows at COMPARE_SIDE x COMPARE_SIDE, float32 RGB in [0, 1]: first the whole, then crops
    of CROPS of its side (centred, at the corners and the edges' middles) of it at PICTURE_SIDE. (The aspect
    ratio is not kept: a copy cropped a little changes it a little.)"""
    from PIL import Image

    big = img.convert("RGB").resize((PICTURE_SIDE, PICTURE_SIDE), Image.Resampling.BOX)
    out = []
    for c in CROPS:
        w = int(round(PICTURE_SIDE * c))
        steps = sorted({0, (PICTURE_SIDE - w) // 2, PICTURE_SIDE - w})
        for x in steps:
            for y in steps:
                win = big.crop((x, y, x + w, y + w)).resize((COMPARE_SIDE, COMPARE_SIDE), Image.Resampling.BOX)
                out.append(np.asarray(win, np.float32) / 255.0)
    return np.stack(out)


def _picture_match(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How alike picture `a` is to each of the pictures `b` (same size): the correlation of their brightness (a
    change of exposure or a re-encoding keeps it) times how close their colours stay once brightness is matched."""
    ga, gb = a.mean(axis=-1), b.mean(axis=-1)
    da = (ga - ga.mean()).reshape(-1)
    db = (gb - gb.mean(axis=(1, 2), keepdims=True)).reshape(b.shape[0], -1)
    na, nb = float(np.sqrt(da @ da)), np.sqrt((db * db).sum(axis=1))
    flat_a, flat_b = na < 1e-3, nb < 1e-3
    corr = np.where(flat_a | flat_b, (flat_a & flat_b).astype(np.float32),  # flat pictures: only colour says anything
                    (db @ da) / np.maximum(na * nb, 1e-9))
    gain = (a.mean() + 1e-3) / (b.mean(axis=(1, 2, 3)) + 1e-3)
    diff = np.abs(a[None] - np.clip(b * gain[:, None, None, None], 0, 1)).mean(axis=-1)
    # By blocks, the worst one: a re-encoding differs a little everywhere, an object recoloured or moved a lot
    # in a few blocks (over the whole picture a small object's change averages away).
    n = b.shape[0]
    blocks = diff.reshape(n, BLOCKS, COMPARE_SIDE // BLOCKS, BLOCKS, COMPARE_SIDE // BLOCKS).mean(axis=(2, 4))
    colour = 1.0 - blocks.reshape(n, -1).max(axis=1) * 2.0
    return np.maximum(corr, 0.0) * np.maximum(colour, 0.0)


def picture_likeness(a: np.ndarray, b: np.ndarray) -> float:
    """The best match of one picture's whole with the other's windows, either way round: a copy cropped by up to
    ~10 % lines up with a window of its original; a moved object does not move the background with it."""
    return float(max(_picture_match(a[0], b).max(), _picture_match(b[0], a).max()))


# ----------------------------------------------------------------- sounds
def sound_sketch(wave: np.ndarray, sample_rate: int = SOUND_RATE) -> np.ndarray:
    """A log-mel spectrogram (MEL_BANDS x frames) of at most SOUND_SECONDS of mono audio at SOUND_RATE."""
    import librosa

    wave = np.asarray(wave, np.float32)[: int(SOUND_SECONDS * sample_rate)]
    if wave.size < 2048:
        wave = np.pad(wave, (0, 2048 - wave.size))
    mel = librosa.feature.melspectrogram(y=wave, sr=sample_rate, n_fft=2048, hop_length=512, n_mels=MEL_BANDS,
                                         fmax=sample_rate / 2)
    return np.log(mel + 1e-6).astype(np.float32)


def sound_likeness(a: np.ndarray, b: np.ndarray) -> float:
    """How alike two spectrograms are over their common length: frame by frame, the correlation of the two spectra
    (a resampled, re-encoded or down-mixed copy keeps its bands; the same tune an octave up moves every band),
    averaged over the frames where either is audible, times the correlation of their loudness over time, times
    how much of the longer one they share. Silence counts for nothing: two pulsing tones share their gaps."""
    n = min(a.shape[1], b.shape[1])
    if n == 0:
        return 0.0
    x, y = a[:, :n], b[:, :n]
    floor = max(float(x.max()), float(y.max())) - 11.5  # 50 dB under the louder one's peak: codecs drop what is quieter
    x, y = np.maximum(x, floor), np.maximum(y, floor)
    loud_x, loud_y = x.max(axis=0) > floor + 4.6, y.max(axis=0) > floor + 4.6  # 20 dB above the floor
    audible = loud_x | loud_y
    if not audible.any():
        return 1.0
    dx, dy = x - x.mean(axis=0), y - y.mean(axis=0)
    num = (dx * dy).sum(axis=0)
    den = np.sqrt((dx * dx).sum(axis=0) * (dy * dy).sum(axis=0))
    frames = np.where(den > 1e-9, num / np.maximum(den, 1e-9), 0.0)
    spectra = float(np.clip(frames[audible], 0, 1).mean())
    ex, ey = x.mean(axis=0) - x.mean(), y.mean(axis=0) - y.mean()
    ne, ny = float(np.sqrt(ex @ ex)), float(np.sqrt(ey @ ey))
    envelope = 1.0 if ne < 1e-6 and ny < 1e-6 else max(0.0, float(ex @ ey) / max(ne * ny, 1e-9))
    return spectra * envelope * (n / max(a.shape[1], b.shape[1]))


# ----------------------------------------------------------------- words
_WORD = re.compile(r"\w+", re.UNICODE)


def words_sketch(text: str | None) -> frozenset[str]:
    """The passage's word triples (single words for a passage under six words), case and accents folded: what
    a copy of a paragraph keeps through re-typesetting, and a paraphrase does not."""
    folded = unicodedata.normalize("NFKD", text or "").casefold()
    words = _WORD.findall("".join(c for c in folded if not unicodedata.combining(c)))
    if len(words) < 6:
        return frozenset(words)
    return frozenset(" ".join(words[i:i + 3]) for i in range(len(words) - 2))


def words_likeness(a: frozenset[str], b: frozenset[str]) -> float:
    """Jaccard overlap of two passages' word triples."""
    if not a and not b:
        return 1.0
    return len(a & b) / max(1, len(a | b))
