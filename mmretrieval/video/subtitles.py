"""A video's subtitles: text streams inside the container (mov_text, SubRip, WebVTT, ASS) and sidecar files
beside it (`name.srt`, `name.vtt`, `name.en.srt`), as cues with their times."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..documents.plain import decode_text_bytes
from ..documents.subtitles import cues
from .container import opened

SIDECAR_EXTENSIONS = (".srt", ".vtt")
MAX_SIDECAR = 16 << 20
_ASS_TAG = re.compile(r"\{[^}]{0,200}\}|<[^>]{0,200}>")


@dataclass
class Track:
    """One subtitle track: where it came from (`source`: 'embedded' or the sidecar's file name), its
    language when known, and its cues (start s, end s, text)."""

    source: str
    lang: str | None
    cues: list[tuple[float, float, str]] = field(default_factory=list)


def sidecars(path: str, names: Iterable[str] | None = None) -> list[str]:
    """Subtitle files that belong to the video at `path`: same folder, its name up to the extension, then
    `.srt`/`.vtt`, optionally with a language or other tag between (`clip.en.srt`, `clip.en.forced.vtt`)."""
    folder, base = os.path.split(path)
    stem = os.path.splitext(base)[0]
    if names is None:
        try:
            names = os.listdir(folder or ".")
        except OSError:
            return []
    out = []
    for n in names:
        low = n.lower()
        if not low.endswith(SIDECAR_EXTENSIONS) or n.startswith("."):
            continue
        core = n[:-4]
        if core == stem or core.startswith(stem + "."):
            out.append(os.path.join(folder, n))
    return sorted(out)


def _lang_of(sidecar: str, video: str) -> str | None:
    stem = os.path.splitext(os.path.basename(video))[0]
    middle = os.path.basename(sidecar)[len(stem) + 1:-4]
    return middle.split(".")[0] or None if middle else None


def read_sidecar(path: str, video: str) -> Track:
    with open(path, "rb") as f:
        data = f.read(MAX_SIDECAR + 1)
    if len(data) > MAX_SIDECAR:
        raise ValueError("subtitle file over 16 MB")
    text, _ = decode_text_bytes(data)
    found, _ = cues(text)
    return Track(os.path.basename(path), _lang_of(path, video), found)


def embedded(src: Any) -> tuple[list[Track], int]:
    """The text subtitle tracks inside a container, and how many picture tracks (DVD/Blu-ray subtitles:
    images of text) it holds that are not read."""
    tracks: list[Track] = []
    pictures = 0
    with opened(src) as c:
        streams = []
        for s in c.streams.subtitles:
            name = s.codec_context.name if s.codec_context is not None else ""
            if name in ("dvd_subtitle", "hdmv_pgs_subtitle", "dvb_subtitle", "xsub") or s.codec_context is None:
                pictures += 1
                continue
            streams.append(s)
        if not streams:
            return [], pictures
        by_index = {s.index: Track("embedded", (s.metadata.get("language") or "").lower() or None) for s in streams}
        for s in streams:
            s.codec_context.skip_frame = "DEFAULT"
        for pkt in c.demux(streams):
            if pkt.size == 0 or pkt.pts is None or not pkt.time_base:
                continue
            start = float(pkt.pts * pkt.time_base)
            end = start + float((pkt.duration or 0) * pkt.time_base)
            try:
                subs = pkt.decode()
            except Exception:
                continue
            words = []
            for sub in subs:
                raw = getattr(sub, "dialogue", None) or getattr(sub, "text", None) or b""
                text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
                text = _ASS_TAG.sub("", text.replace("\\N", "\n").replace("\\n", "\n"))
                words.append(" ".join(text.split()))
            text = " ".join(w for w in words if w)
            if text:
                by_index[pkt.stream.index].cues.append((start, max(start, end), text))
        tracks = [t for t in by_index.values() if t.cues]
        for t in tracks:
            t.cues.sort()
    return tracks, pictures
