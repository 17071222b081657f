"""Video: a file of moments, each an item of a modality the space already has: scenes (image), windows of
its sound (audio) and runs of its subtitles (text), each with its time range (`mmretrieval.video` does the
decoding). Sampled frames are merged into scenes once the image tower has embedded them (`finish`).

Animated GIF, WebP and PNG files stay images (their first frame): they are short loops, and the image
modality claims them."""
from __future__ import annotations

import os
from typing import Any, Iterable, Iterator

import numpy as np

from ..dates import clock
from ..errors import DecodeError, UsageError
from ..video import frames, scenes, sound, subtitles
from ..video.container import duration, opened, picture_stream, source, undecodable_picture
from .base import DecodeContext, Item, Modality, Note, register_modality
from .metadata import media_metadata

EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".wmv", ".asf", ".flv", ".mpg",
                        ".mpeg", ".m2v", ".ts", ".mts", ".m2ts", ".3gp", ".3g2", ".ogv", ".vob", ".mxf", ".divx"})


def decode(data: bytes | None, path: str, ctx: DecodeContext) -> Iterator[Item | Note]:
    src = lambda: source(data, path)  # noqa: E731  each reader opens its own handle
    with opened(src()) as c:
        picture = picture_stream(c)
        missing_codec = undecodable_picture(c) if picture is None else None
        has_sound = any(s.codec_context is not None for s in c.streams.audio)
        has_subtitles = bool(c.streams.subtitles)
        length = duration(c, picture)
    image_enc, audio_enc = ctx.space.image, ctx.space.audio
    items = 0
    if picture is None:
        if not has_sound:
            raise DecodeError(missing_codec or "no video or audio stream")
        if audio_enc is None:
            raise DecodeError(f"{missing_codec or 'no video stream'}, and this space has no audio tower for its sound")
        yield Note(f"{missing_codec or 'no video stream'}: indexed as sound")
    elif image_enc is None:
        yield Note("picture not indexed: this space has no image tower")
    else:
        try:
            yield from _scenes(src, image_enc)
            items += 1
        except DecodeError as e:  # nothing of the picture was read: the sound and subtitles may still be
            if not has_sound or audio_enc is None:
                raise
            yield Note(f"picture not indexed: {e}")
    if has_sound and audio_enc is not None:
        info = sound.Listening()
        for w in sound.windows(src(), audio_enc.sample_rate, audio_enc.window_s, audio_enc.hop_s, length, info):
            yield Item(w.locator(), None, w.samples, "audio")
        items += info.windows
        if info.failure:
            yield Note(f"sound: {info.failure} at {clock(info.failed_at or 0)}"
                       + ("; the sound before it is indexed" if info.windows else "; no sound indexed"))
        if info.silent and not info.windows and not info.failure:
            yield Note("its sound is silent: not indexed")
        if info.capped or info.hop > audio_enc.hop_s + 1e-6:
            yield Note(f"long video: sound indexed every {info.hop:.0f} s")
    elif has_sound and picture is not None:
        yield Note("sound not indexed: this space has no audio tower")
    tracks, pictures = subtitles.embedded(src()) if has_subtitles else ([], 0)
    for p in subtitles.sidecars(path):
        try:
            tracks.append(subtitles.read_sidecar(p, path))
        except (OSError, ValueError) as e:
            yield Note(f"subtitles {os.path.basename(p)} not read: {getattr(e, 'strerror', None) or e}")
    for t in tracks if ctx.space.text is not None else []:
        for it in _subtitle_items(t, ctx):
            yield it
            items += 1
    if pictures:
        yield Note(f"{pictures} picture subtitle track(s) not read (images of text)")
    if not items:
        raise DecodeError("nothing to index: no picture, sound or subtitles could be read")


def _scenes(src: Any, enc: Any) -> Iterator[Item | Note]:
    """The samples as image items with the stretch each stands for ({"t", "start", "end"}); `finish` merges
    them into scenes."""
    info = frames.Sampling()
    pending: frames.Sample | None = None
    start = 0.0
    for s in frames.samples(src, info):
        if pending is not None:
            yield Item({"t": round(pending.t, 3), "start": round(start, 3), "end": round(s.t, 3)}, None,
                       enc.preprocess(pending.image), "image")
            start = s.t
        pending = s
    end = info.duration if info.duration and info.duration > pending.t else max(info.last_t, pending.t) + 1 / 25
    yield Item({"t": round(pending.t, 3), "start": round(start, 3), "end": round(end, 3)}, None,
               enc.preprocess(pending.image), "image")
    if info.broken_at is not None:
        yield Note(f"the picture could not be read past {clock(info.broken_at)}")
    if info.sparse_step:
        yield Note(f"long video: a frame looked at every {info.sparse_step:.0f} s at most")


def _subtitle_items(track: subtitles.Track, ctx: DecodeContext) -> Iterator[Item]:
    from ..documents.subtitles import groups
    from .text import passage_items

    where = {"subtitles": track.source, **({"lang": track.lang} if track.lang else {})}
    for block in groups(track.cues, where):
        yield from passage_items(block, ctx)


def finish(items: list[tuple], vectors: np.ndarray) -> tuple[list[tuple], np.ndarray]:
    """Merge a video's frame samples (image items, in time order) into scenes; other items pass through.
    `items`: (locator, text, modality) per item."""
    rows = [i for i, it in enumerate(items) if it[2] == "image" and scenes.is_sample(it[0])]
    if not rows:
        return items, vectors
    merged, mvecs = scenes.merge([items[i][0] for i in rows], vectors[rows])
    taken = set(rows)
    rest = [i for i in range(len(items)) if i not in taken]
    return ([(loc, None, "image") for loc in merged] + [items[i] for i in rest],
            np.concatenate([mvecs, vectors[rest]]) if rest else mvecs)


def companions(path: str, names: Iterable[str] | None = None) -> list[str]:
    return subtitles.sidecars(path, names)


def check_query(value: Any) -> None:
    raise UsageError("a video cannot be a query: search with one of its frames (an image) or a clip of its sound "
                     "(audio); use `--type video` to get videos back")


VIDEO = register_modality(Modality(
    name="video",
    extensions=lambda: EXTENSIONS,
    decode=decode,
    # Whether its files can be indexed: scenes need the image tower, sound the audio tower (a text+audio space
    # still indexes a video's sound and subtitles).
    encoder=lambda space: space.image if space.image is not None else space.audio,
    encode_query=lambda enc, value: None,
    check_query=check_query,
    container=True,
    finish=finish,
    companions=companions,
    metadata=media_metadata,
    missing_tower="this space has neither an image nor an audio tower for a video's picture or sound",
    media_types={".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
                 ".mkv": "video/x-matroska", ".ogv": "video/ogg"},
    claim_priority=1,  # a container over a bare stream: .webm is video first (its sound is indexed with it)
))
