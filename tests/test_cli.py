import json
import os
import subprocess
import sys

import pytest

from mmretrieval.cli import main
from media import make_media


@pytest.fixture
def media(tmp_path):
    return make_media(tmp_path / "media")


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_end_to_end(tmp_path, media, tiny_space_dir, capsys):
    idx = tmp_path / "idx"
    root = media["red"].parent.parent
    code, out, err = run(capsys, "index", root, "--index", idx, "--model", tiny_space_dir, "-v")
    assert code == 0, err
    assert "indexed" in out and "items/s" in out and "image 10" in out
    assert "skipped 5 file(s)" in out and "not-an-image.jpg: not a recognised image format" in out

    code, out, err = run(capsys, "search", "a red circle", "--index", idx, "--json", "-k", "4")
    assert code == 0, err
    hits = json.loads(out)
    assert len(hits) == 4 and [h["rank"] for h in hits] == [1, 2, 3, 4]
    assert set(hits[0]) >= {"rank", "score", "modality", "path", "id", "locator"}
    assert hits == sorted(hits, key=lambda h: -h["score"])

    code, out, _ = run(capsys, "search", "--image", media["red"], "--type", "text", "--index", idx)
    assert code == 0 and out.count("text ") >= 1 and "notes.md:" in out and '"' in out
    code, out, _ = run(capsys, "search", "--audio", media["wav"], "--type", "image", "--type", "audio",
                       "-k", "5", "--index", idx, "--json")
    hits = json.loads(out)
    assert code == 0 and {h["modality"] for h in hits} <= {"image", "audio"}
    assert hits[0]["path"] == str(media["wav"])  # itself, audio included on request
    code, out, _ = run(capsys, "search", "a tone", "--type", "audio", "--index", idx)
    assert code == 0 and "[0:0" in out  # time ranges shown

    code, out, _ = run(capsys, "info", "--index", idx, "--json")
    info = json.loads(out)
    assert code == 0 and info["space"]["name"] == "test-tiny" and info["files_skipped"] == 5
    assert info["index_type"] == "flat" and info["bytes_on_disk"] > 0
    assert info["space"]["precision"] in ("fp32", "text=fp32,image=bf16,audio=bf16", "text=fp32,image=int8,audio=bf16",
                                          "text=fp32,image=int8,audio=fp32")  # auto: by the CPU

    # second run: nothing new; MMR_INDEX stands in for --index
    os.environ["MMR_INDEX"] = str(idx)
    try:
        code, out, _ = run(capsys, "index", root)
        assert code == 0 and "indexed 0 items" in out
        code, out, _ = run(capsys, "info")
        assert code == 0 and "test-tiny" in out
    finally:
        del os.environ["MMR_INDEX"]


def test_cli_errors_are_one_line(tmp_path, media, tiny_space_dir, capsys):
    idx = tmp_path / "idx"
    assert run(capsys, "index", media["red"], "--index", idx, "--model", tiny_space_dir)[0] == 0
    cases = [
        (["search", "", "--index", idx], 2, "empty"),
        (["search", "x", "-k", "0", "--index", idx], 2, "k must"),
        (["search", "x", "--type", "sculpture", "--index", idx], 2, "unknown result type"),
        (["search", "--image", tmp_path / "nope.jpg", "--index", idx], 2, "not found"),
        (["search", "x", "--index", tmp_path / "nothing"], 1, "not an mmretrieval index"),
        (["index", media["red"], "--index", tmp_path / "i2", "--model", "no-such-space"], 1, "not a registered space"),
        (["index", media["red"], "--index", idx, "--model", "ViT-B-32:laion2b_s34b_b79k"], 1, "built in space"),
        (["index", media["red"], "--index", tmp_path / "i3", "--precision", "fp8"], 2, "use auto, fp32, bf16, fp16"),
        (["index", media["red"], "--index", idx, "--precision", "bf16"], 1, "encodes with precision"),
    ]
    for args, want_code, want in cases:
        code, out, err = run(capsys, *args)
        assert code == want_code, (args, err)
        assert want in err and err.count("\n") == 1 and "Traceback" not in err


def test_console_script_exit_codes(tmp_path):
    """The installed entry point: no traceback ever reaches the user."""
    exe = [sys.executable, "-m", "mmretrieval.cli"]
    r = subprocess.run(exe + ["search", "x", "--index", str(tmp_path / "none")], capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.startswith("mmr: ")
    r = subprocess.run(exe + ["bogus"], capture_output=True, text=True)
    assert r.returncode == 2
