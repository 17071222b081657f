import json

import numpy as np
import pytest

import mmretrieval as mmr
from mmretrieval.cli import main
from mmretrieval.errors import SpaceMismatchError, UsageError
from mmretrieval.space.runtime import Space
from mmretrieval.space.registry import load_space_dir
from mmretrieval.train.corpus import generate
from mmretrieval.train.evaluate import evaluate
from mmretrieval.train.pairs import read_pairs
from tiny_space import TINY_CLIP


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    generate(root / "train", seed=1, images_per_class=1, sounds_per_class=1)
    generate(root / "heldout", seed=2, images_per_class=1, sounds_per_class=1)
    return root


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("cfg") / "tiny.json"
    p.write_text(json.dumps({"model_cfg": TINY_CLIP, "preprocess_cfg": {}}))
    return p


def test_corpus_is_deterministic_and_splits_differ(tmp_path, corpus):
    generate(tmp_path / "again", seed=1, images_per_class=1, sounds_per_class=1)
    a = (corpus / "train" / "image_pairs.jsonl").read_text()
    assert a == (tmp_path / "again" / "image_pairs.jsonl").read_text()
    assert (corpus / "train" / "images" / "red-star-000.png").read_bytes() == \
        (tmp_path / "again" / "images" / "red-star-000.png").read_bytes()
    assert (corpus / "train" / "sounds" / "noise-high-rising-000.wav").read_bytes() == \
        (tmp_path / "again" / "sounds" / "noise-high-rising-000.wav").read_bytes()
    assert (corpus / "heldout" / "images" / "red-star-000.png").read_bytes() != \
        (corpus / "train" / "images" / "red-star-000.png").read_bytes()
    pairs = read_pairs(corpus / "train" / "pairs.jsonl")
    labels = {p.label for p in pairs}
    assert len({lbl for lbl in labels if len(lbl.split()) == 2}) == 6 * 8      # shape x colour
    assert len({lbl for lbl in labels if len(lbl.split()) == 3}) == 4 * 3 * 3  # timbre x pitch x contour
    assert all(p.caption for p in pairs)


def test_train_clip_from_config_resume_and_eval(tmp_path, corpus, config_file, capsys):
    out = tmp_path / "space"
    pairs = corpus / "train" / "image_pairs.jsonl"
    code = main(["train", "clip", "--pairs", str(pairs), "--config", str(config_file), "--out", str(out),
                 "--epochs", "6", "--batch-size", "16", "--lr", "3e-3", "--name", "t-clip",
                 "--text-pairs", str(corpus / "train" / "text_pairs.jsonl"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 6 * 3 and log[-1]["step"] == 18
    assert np.mean([r["loss"] for r in log[-3:]]) < np.mean([r["loss"] for r in log[:3]])  # it learns
    spec = load_space_dir(out)
    assert spec.name == "t-clip" and spec.audio is None
    # resume continues from the checkpoint instead of starting over
    code = main(["train", "clip", "--pairs", str(pairs), "--config", str(config_file), "--out", str(out),
                 "--epochs", "7", "--batch-size", "16", "--resume", "--no-progress"])
    out_text = capsys.readouterr().out
    assert code == 0 and "resumed from step 18" in out_text
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log][-4:] == [18, 19, 20, 21]
    # the result indexes and searches like any space
    eng = mmr.Engine(tmp_path / "idx", model=str(out))
    eng.index([corpus / "heldout" / "images"])
    assert len(eng.search("a red star", k=3)) == 3
    # eval: recall both ways, precision by label, calibration audit
    code = main(["eval", "--pairs", str(corpus / "heldout" / "image_pairs.jsonl"), "--model", str(out), "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert code == 0
    for d in ("image_to_text", "text_to_image"):
        assert set(rep["image"][d]) == {"R@1", "R@5", "R@10", "P@5"}
        assert all(0 <= v <= 1 for v in rep["image"][d].values())
    assert set(rep["image"]["calibration"]) == {"matched", "random"}
    main(["eval", "--pairs", str(corpus / "heldout" / "image_pairs.jsonl"), "--model", str(out)])
    table = capsys.readouterr().out
    assert "text→image" in table and "calibration audit" in table


def test_train_audio_makes_a_new_space(tmp_path, corpus, tiny_space_noaudio_dir, capsys):
    out = tmp_path / "with-audio"
    idx = tmp_path / "idx"
    eng = mmr.Engine(idx, model=str(tiny_space_noaudio_dir))
    eng.index([corpus / "heldout" / "images"])
    eng.close()
    tower = json.dumps({"arch": "conv", "sample_rate": 8000, "window_s": 1.0, "hop_s": 1.0, "n_fft": 256,
                        "hop_length": 128, "n_mels": 32, "channels": [8, 16]})
    code = main(["train", "audio", "--pairs", str(corpus / "train" / "audio_pairs.jsonl"), "--space",
                 str(tiny_space_noaudio_dir), "--out", str(out), "--epochs", "3", "--batch-size", "12",
                 "--tower", tower, "--no-progress"])
    assert code == 0, capsys.readouterr().err
    log = [json.loads(line) for line in (out / "train_audio_log.jsonl").read_text().splitlines()]
    assert len(log) == 9
    new = Space(load_space_dir(out))
    old = Space(load_space_dir(tiny_space_noaudio_dir))
    assert new.audio is not None and new.fingerprint != old.fingerprint
    # the frozen towers are unchanged: same text vectors
    np.testing.assert_allclose(new.text.encode(["a red star"]), old.text.encode(["a red star"]), atol=1e-6)
    # the old index refuses the new space instead of silently mixing vectors
    with pytest.raises(SpaceMismatchError):
        mmr.Engine(idx, model=str(out))
    rep = evaluate(new, str(corpus / "heldout" / "pairs.jsonl"))
    assert "audio" in rep and "image" in rep and "P@5" in rep["audio"]["text_to_audio"]


def test_bad_pairs_files(tmp_path, tiny_space):
    p = tmp_path / "p.jsonl"
    p.write_text('{"caption": "no media"}\n')
    with pytest.raises(UsageError, match="needs an 'image' or 'audio'"):
        read_pairs(p)
    p.write_text("{not json\n")
    with pytest.raises(UsageError, match="not a JSON object"):
        read_pairs(p)
    c = tmp_path / "p.csv"
    c.write_text("image,caption,label\nmissing.png,a red circle,red circle\n")
    rows = read_pairs(c)
    assert rows[0].image == str(tmp_path / "missing.png") and rows[0].label == "red circle"
    with pytest.raises(UsageError, match="none of the image files"):
        evaluate(tiny_space, str(c))


def test_fine_tune_from_an_existing_space(tmp_path, corpus, tiny_space_noaudio_dir):
    from mmretrieval.train.clip import train_clip

    before = Space(load_space_dir(tiny_space_noaudio_dir))
    rep = train_clip(corpus / "train" / "image_pairs.jsonl", tmp_path / "ft", init=str(tiny_space_noaudio_dir),
                     epochs=2, batch_size=16, lr=1e-3, progress=False)
    assert rep.steps == 6
    after = Space(load_space_dir(tmp_path / "ft"))
    assert after.fingerprint != before.fingerprint and after.dim == before.dim
    # started from the given weights, not from scratch: still close to them after a few small steps
    a, b = before.text.encode(["a red star"])[0], after.text.encode(["a red star"])[0]
    assert float(a @ b) > 0.5


def test_audio_aligned_to_images(tmp_path, corpus, tiny_space_noaudio_dir):
    from mmretrieval.train.audio import train_audio

    rows = [json.loads(x) for x in (corpus / "train" / "audio_pairs.jsonl").read_text().splitlines()]
    imgs = sorted((corpus / "train" / "images").glob("*.png"))
    pairs = tmp_path / "audio_image.csv"
    with open(pairs, "w") as f:
        f.write("audio,image\n")
        for i, r in enumerate(rows[::4]):
            f.write(f"{corpus / 'train' / r['audio']},{imgs[i % len(imgs)]}\n")
    tower = {"arch": "conv", "sample_rate": 8000, "window_s": 1.0, "hop_s": 1.0, "n_fft": 256, "hop_length": 128,
             "n_mels": 32, "channels": [8]}
    rep = train_audio(pairs, str(tiny_space_noaudio_dir), tmp_path / "out", tower=tower, epochs=2, batch_size=8,
                      progress=False)
    assert rep.steps == 2 * (36 // 8)
    assert Space(load_space_dir(tmp_path / "out")).audio is not None
