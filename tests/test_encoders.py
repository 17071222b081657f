import numpy as np
import pytest
from PIL import Image

from mmretrieval.encoders.waves import check_wave, windows
from mmretrieval.encoders.pixels import load_image, to_rgb
from mmretrieval.encoders.packed import PackedLinear
from mmretrieval.encoders.passages import split_passages
from mmretrieval.errors import DecodeError, UsageError
from media import shape_image, tone


def _unit(v):
    return np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_text_encoder_contract(tiny_space):
    enc = tiny_space.text
    texts = ["a red circle", "a blue square", "a low hum", "x" * 500]
    v = enc.encode(texts, batch_size=3)
    assert v.dtype == np.float32 and v.shape == (4, tiny_space.dim) and _unit(v)
    one_by_one = np.concatenate([enc.encode([t]) for t in texts])
    np.testing.assert_allclose(v, one_by_one, atol=1e-5)  # batching keeps order and values
    np.testing.assert_array_equal(enc.encode(texts), enc.encode(texts))  # deterministic
    assert not np.allclose(v[0], v[1])
    with pytest.raises(UsageError, match="batch_size"):
        enc.encode(texts, batch_size=0)
    with pytest.raises(UsageError, match="list of inputs"):
        enc.encode("a red circle")


def test_image_encoder_contract(tiny_space, tmp_path):
    imgs = [shape_image(c) for c in ("red", "green", "blue")]
    p = tmp_path / "x.png"
    imgs[0].save(p)
    v = tiny_space.image.encode(imgs + [str(p)], batch_size=2)
    assert v.shape == (4, tiny_space.dim) and v.dtype == np.float32 and _unit(v)
    np.testing.assert_allclose(v[0], v[3], atol=1e-5)  # path and PIL image give the same vector
    with pytest.raises(UsageError, match="image inputs"):
        tiny_space.image.encode([123])


def test_audio_encoder_contract(tiny_space):
    enc = tiny_space.audio
    sr = enc.sample_rate
    waves = [tone(f, 2.0, sr) for f in (220, 440, 880)]
    v = enc.encode(waves, batch_size=2)
    assert v.shape == (3, tiny_space.dim) and v.dtype == np.float32 and _unit(v)
    np.testing.assert_allclose(v, np.concatenate([enc.encode([w]) for w in waves]), atol=1e-5)
    # (array, sr) pairs are resampled to the tower's rate
    v2 = enc.encode([(tone(440, 2.0, 16000), 16000)])
    assert float(v2[0] @ v[1]) > 0.99
    with pytest.raises(DecodeError, match="too short"):
        enc.encode([np.zeros(10, np.float32)])


def test_audio_windows_cover_the_whole_file():
    sr = 100
    w = windows(np.zeros(1050, np.float32), sr, window_s=4.0, hop_s=4.0)
    assert [(x.start, x.end) for x in w] == [(0.0, 4.0), (4.0, 8.0), (6.5, 10.5)]
    assert all(x.samples.size == 400 for x in w)
    short = windows(np.zeros(150, np.float32), sr, 4.0, 4.0)
    assert len(short) == 1 and short[0].end == 1.5


def test_check_wave_rejects_nan():
    x = np.ones(1000, np.float32)
    x[3] = np.nan
    with pytest.raises(DecodeError, match="NaN"):
        check_wave(x, 8000)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "CMYK", "L", "I;16", "1", "I", "F"])
def test_every_mode_becomes_rgb(mode):
    base = shape_image("red")
    img = base.convert(mode) if mode != "I;16" else Image.fromarray(
        (np.asarray(base.convert("L"), np.uint16) * 257))
    out = to_rgb(img)
    assert out.mode == "RGB" and out.size == base.size


def test_transparency_composites_on_white():
    img = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    assert to_rgb(img).getpixel((0, 0)) == (255, 255, 255)
    p = Image.new("P", (8, 8), 0)
    p.putpalette([0, 0, 0] * 256)
    p.info["transparency"] = 0
    assert to_rgb(p).getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_grey_keeps_its_range():
    arr = np.full((4, 4), 65535, np.uint16)
    assert to_rgb(Image.fromarray(arr)).getpixel((0, 0)) == (255, 255, 255)
    arr[:] = 32768
    assert to_rgb(Image.fromarray(arr)).getpixel((0, 0))[0] in (127, 128)


def test_exif_orientation_and_first_frame(tmp_path):
    img = Image.new("RGB", (40, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    p = tmp_path / "rot.jpg"
    img.save(p, exif=exif)
    assert load_image(p).size == (20, 40)
    g = tmp_path / "anim.gif"
    Image.new("RGB", (8, 8), "red").save(g, save_all=True, append_images=[Image.new("RGB", (8, 8), "blue")])
    r, gch, b = load_image(g).getpixel((4, 4))
    assert r > 200 and b < 50


def test_decompression_bomb_rejected(tmp_path, monkeypatch):
    p = tmp_path / "big.png"
    Image.new("L", (2000, 2000)).save(p)
    monkeypatch.setenv("MMR_MAX_PIXELS", "1000000")
    with pytest.raises(DecodeError, match="too large"):
        load_image(p)


def test_bad_images_give_reasons(tmp_path):
    p = tmp_path / "x.jpg"
    p.write_text("hello")
    with pytest.raises(DecodeError, match="not a recognised image"):
        load_image(p)
    good = tmp_path / "g.jpg"
    shape_image("red", size=256).save(good)
    t = tmp_path / "t.jpg"
    t.write_bytes(good.read_bytes()[:300])
    with pytest.raises(DecodeError):
        load_image(t)


def test_passages_fit_the_context_and_know_their_place(tiny_space):
    count = tiny_space.text.count_tokens
    text = "\n".join(f"Sentence number {i} talks about a {['red', 'blue'][i % 2]} shape on line {i}." for i in range(60))
    ps = split_passages(text, count, max_tokens=tiny_space.text.max_passage_tokens)
    assert len(ps) > 3
    for p in ps:
        assert count(p.text) <= 75
        assert text[p.start:p.end] == p.text
        assert p.line == text.count("\n", 0, p.start) + 1
    covered = set()
    for p in ps:
        covered.update(range(p.start, p.end))
    assert all(i in covered for i, c in enumerate(text) if not c.isspace())  # nothing lost
    assert any(ps[i].end > ps[i + 1].start for i in range(len(ps) - 1))   # overlap between passages


def test_passages_cut_one_huge_line(tiny_space):
    count = tiny_space.text.count_tokens
    text = "word " * 1000 + "x" * 3000
    ps = split_passages(text, count, max_tokens=75)
    assert all(count(p.text) <= 75 for p in ps)
    assert ps[-1].end == len(text.rstrip())


def test_trimmed_text_encoding_matches_open_clip(tiny_space):
    """The fast path (sorted, trimmed to the longest text of each batch) equals open_clip's encode_text."""
    import torch

    from mmretrieval.space.runtime import Space
    from mmretrieval.space.registry import resolve_model_arg

    texts = ["a red circle", "a", "a much longer description of a blue square on a pale background, drawn twice",
             "", "x " * 200, "a red circle"]
    for space in (tiny_space, Space(resolve_model_arg("tiny"))):
        enc = space.text
        assert enc.trim
        fast = enc.encode(texts, batch_size=4)
        plain = Space(space.spec, inference=False).model  # open_clip's own modules, no prepacked weights
        assert not any(isinstance(m, PackedLinear) for m in plain.modules())
        assert any(isinstance(m, PackedLinear) for m in space.model.modules())
        with torch.inference_mode():
            # open_clip's tokenizer and modules against ours (`encoders.bpe`, trimmed, prepacked)
            ref = torch.nn.functional.normalize(plain.encode_text(space.tokenizer(texts)).float(), dim=-1).numpy()
        assert np.abs(fast - ref).max() <= 1e-5
        np.testing.assert_array_equal(fast[0], fast[5])


def test_packed_image_tower_matches_open_clip(tiny_space):
    """Prepacked projections (encoders.packed) against open_clip's modules, fp32 and bf16."""
    import torch

    from mmretrieval.space.runtime import Space

    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    plain = Space(tiny_space.spec, inference=False).model
    with torch.inference_mode():
        ref = torch.nn.functional.normalize(plain.encode_image(x), dim=-1)
        got = torch.nn.functional.normalize(tiny_space.model.encode_image(x), dim=-1)
        assert (got - ref).abs().max() <= 1e-5
        bf = Space(tiny_space.spec, precision="bf16").model
        low = torch.nn.functional.normalize(bf.encode_image(x.bfloat16()).float(), dim=-1)
        assert (low * ref).sum(-1).min() >= 0.999


def test_jpeg_draft_decode_matches_full_decode(tiny_space, tmp_path):
    """The fast path (DCT-domain downscale, then the model's own resize/crop) against full decode."""
    import torch

    from mmretrieval.space.runtime import Space
    from mmretrieval.space.registry import resolve_model_arg

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:1200, 0:1600]
    base = np.stack([128 + 100 * np.sin(xx / 90.0), 128 + 100 * np.cos(yy / 70.0), 128 + 60 * np.sin((xx + yy) / 150.0)], -1)
    img = Image.fromarray(np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8))
    shape_image("red", size=600).save(tmp_path / "x.png")
    img.paste(Image.open(tmp_path / "x.png"), (500, 300))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "photo.jpg"
    img.save(path, quality=92, exif=exif)
    shipped = resolve_model_arg("tiny")
    # (fast path, reference): draft decode alone, and draft decode + the bf16 image tower, against full
    # decode through open_clip's own fp32 modules
    for space, plain in ((tiny_space, Space(tiny_space.spec, inference=False)),
                         (Space(shipped), Space(shipped, inference=False)),
                         (Space(shipped, precision="image=bf16"), Space(shipped, inference=False))):
        enc = space.image
        drafted = enc.load(path)
        assert drafted.size[0] < 1200 and drafted.info["original_size"] == (1200, 1600)  # rotated by EXIF
        fast = enc.encode([str(path)])[0]
        with torch.inference_mode():
            ref = torch.nn.functional.normalize(
                plain.model.encode_image(plain.preprocess(load_image(path))[None]).float(), dim=-1)[0].numpy()
        assert float(fast @ ref) >= 0.999
    assert tiny_space.identity["image_decode"]["jpeg_draft"]
