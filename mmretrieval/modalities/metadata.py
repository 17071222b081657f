"""What files say about themselves: the date a photo was taken or a recording made, and their tags.

Used for date filters and sorting (`files.date`, with where it came from in `files.date_source`: "exif",
"tag", or "mtime" when the file says nothing) and, as words, for keyword search. Reading metadata never
skips a file: anything unreadable is simply absent.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

from ..dates import parse_date


@dataclass
class FileMeta:
    date: float | None = None         # seconds since the epoch (a naive date-time is read as UTC)
    date_source: str | None = None    # "exif" or "tag"
    tags: list[str] = field(default_factory=list)


def _text(v: object) -> str | None:
    if isinstance(v, bytes):
        if v[:8] in (b"ASCII\0\0\0", b"UNICODE\0", b"JIS\0\0\0\0\0", b"\0" * 8):  # EXIF UserComment's charset
            v = v[8:].decode("utf-16" if v[:7] == b"UNICODE" else "latin-1", errors="ignore")
        else:
            v = v.decode("utf-8", errors="ignore")
    s = str(v).replace("\x00", " ").strip() if v is not None else ""
    return s or None


def image_metadata(data: bytes | None, path: str) -> FileMeta:
    from PIL import Image, IptcImagePlugin

    meta = FileMeta()
    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as im:
            exif = im.getexif()
            sub = exif.get_ifd(0x8769)
            for raw in (sub.get(36867), sub.get(36868), exif.get(306)):  # DateTimeOriginal, Digitized, DateTime
                when = parse_date(raw) if raw else None
                if when is not None:
                    meta.date, meta.date_source = when, "exif"
                    break
            for raw in (exif.get(270), sub.get(37510)):  # ImageDescription, UserComment
                if (t := _text(raw)) is not None:
                    meta.tags.append(t)
            for tag in (0x9C9B, 0x9C9C, 0x9C9E):  # XPTitle, XPComment, XPKeywords (UTF-16LE)
                raw = exif.get(tag)
                if raw:
                    b = bytes(raw) if not isinstance(raw, bytes) else raw
                    if (t := _text(b.decode("utf-16-le", errors="ignore"))) is not None:
                        meta.tags.append(t)
            iptc = IptcImagePlugin.getiptcinfo(im) or {}
            for key in ((2, 25), (2, 120), (2, 5)):  # keywords, caption, object name
                vals = iptc.get(key)
                for v in vals if isinstance(vals, list) else [vals] if vals else []:
                    if (t := _text(v)) is not None:
                        meta.tags.append(t)
    except Exception:  # metadata is a bonus: a file Pillow decoded is indexed with or without it
        pass
    return meta


MEDIA_TAGS = ("title", "artist", "album", "comment", "description", "genre", "keywords",
              "com.apple.quicktime.title", "com.apple.quicktime.description", "com.apple.quicktime.keywords")
MEDIA_DATES = ("com.apple.quicktime.creationdate", "creation_time", "date", "year", "tdrc", "tdor")


def media_metadata(data: bytes | None, path: str) -> FileMeta:
    """A sound or video file's date and tags, from its container's tags and its first streams' (FFmpeg's names:
    an iPhone's QuickTime creation date, an MP4's creation_time, ID3 and Vorbis comments)."""
    meta = FileMeta()
    try:
        import av

        with av.open(io.BytesIO(data) if data is not None else path, metadata_errors="ignore") as c:
            tags: dict[str, str] = {}
            for s in (*c.streams.video[:1], *c.streams.audio[:1]):
                tags.update({k.lower(): v for k, v in s.metadata.items()})
            tags.update({k.lower(): v for k, v in c.metadata.items()})
    except Exception:
        return meta
    for key in MEDIA_DATES:
        when = parse_date(tags[key]) if tags.get(key) else None
        if when is not None:
            meta.date, meta.date_source = when, "tag"
            break
    meta.tags = list(dict.fromkeys(t for k in MEDIA_TAGS if (t := _text(tags.get(k))) is not None))
    return meta
