"""Edges found reading the code as a newcomer: a slow POST search must not stall the server, device names that
are not devices, weights in --add that are really times, --mode with composed queries, tokens in access logs,
--device reaching every command, one version everywhere, and what `mmr --help` imports."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import mmretrieval as mmr
from mmretrieval.cli import main
from mmretrieval.errors import UsageError
from mmretrieval.synth import shape_image

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_index(tmp_path_factory, tiny_space_dir):
    root = tmp_path_factory.mktemp("edges")
    lib = root / "lib"
    lib.mkdir()
    for c in ("red", "green", "blue"):
        shape_image(c).save(lib / f"{c}.png")
        (lib / f"{c}.txt").write_text(f"A {c} circle at 12:30.")
    eng = mmr.Engine(root / "idx", model=str(tiny_space_dir))
    eng.index([lib])
    eng.close()
    return root / "idx", lib


def test_a_slow_post_search_does_not_stall_other_routes(small_index, monkeypatch):
    """POST /search used to run the engine on the event loop: while one waited (towers loading), /healthz did too."""
    pytest.importorskip("fastapi")
    import httpx
    from live_server import live_server

    from mmretrieval.server.app import create_app

    app = create_app(small_index[0])
    release, entered = threading.Event(), threading.Event()
    real = app.state.engine.search

    def slow(*a, **kw):
        entered.set()
        release.wait(30)
        return real(*a, **kw)

    monkeypatch.setattr(app.state.engine, "search", slow)
    with live_server(app) as base:
        box = {}
        post = threading.Thread(target=lambda: box.setdefault("r", httpx.post(f"{base}/search", timeout=60,
                                                                             json={"text": "a red circle", "k": 2})))
        post.start()
        try:
            assert entered.wait(10)
            t0 = time.monotonic()
            r = httpx.get(f"{base}/healthz", timeout=5)
            assert r.status_code == 200 and time.monotonic() - t0 < 2
        finally:
            release.set()
            post.join(30)
        assert box["r"].status_code == 200 and len(box["r"].json()) == 2


def test_device_names_that_are_not_devices_are_refused(small_index):
    from mmretrieval.space.precision import auto_precision

    with pytest.raises(UsageError, match="bad device 'gpu'; valid: auto, cpu, cuda or cuda:N"):
        mmr.Engine(small_index[0], device="gpu")
    with pytest.raises(UsageError, match="unknown device 'gpu'"):
        auto_precision("gpu")
    assert auto_precision("cuda:1")["image"] == "fp16"
    assert auto_precision("cpu", native_bf16=False, int8_faster=False)["image"] == "fp32"
    # auto is a device request like any other: with no usable GPU it is the CPU
    with mmr.Engine(small_index[0], device="auto", readonly=True) as eng:
        if not _has_cuda():
            assert eng.device == "cpu"
        assert eng.search("a red circle", k=1)


def _has_cuda() -> bool:
    from mmretrieval.space.device import cuda_devices

    return cuda_devices() > 0


def test_add_weights_and_times(small_index):
    from mmretrieval.cli.search import split_weight

    assert split_weight("0.5:people") == (0.5, "people")
    assert split_weight("-2: dogs") == (-2.0, "dogs")
    assert split_weight("12:30 meeting") == (1.0, "12:30 meeting")
    assert split_weight("16:9 screenshot") == (1.0, "16:9 screenshot")
    assert split_weight("2: 12:30 meeting") == (2.0, "12:30 meeting")
    assert split_weight("people: crowds") == (1.0, "people: crowds")
    assert split_weight(".5:/photos/a.jpg") == (0.5, "/photos/a.jpg")


def test_mode_with_a_composed_query_is_refused(small_index, capsys):
    idx = str(small_index[0])
    code = main(["search", "red", "--add", "circle", "--mode", "keyword", "--index", idx])
    assert code == 2 and "keyword search takes one plain text query, not a composed one" in capsys.readouterr().err
    assert main(["search", "red", "--add", "circle", "--index", idx, "-k", "2"]) == 0
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mmretrieval.server.app import create_app

    c = TestClient(create_app(idx))
    r = c.post("/search", json={"parts": [{"weight": 1, "modality": "text", "value": "red"}], "mode": "hybrid"})
    assert r.status_code == 422 and "not a composed one" in r.json()["error"]
    r = c.post("/search", json={"parts": [{"weight": 1, "modality": "text", "value": "red"}], "k": 2})
    assert r.status_code == 200 and len(r.json()) == 2


def test_tokens_do_not_reach_the_access_log(small_index):
    pytest.importorskip("fastapi")
    from mmretrieval.server.app import create_app

    create_app(str(small_index[0]), token="s3cret")
    access = logging.getLogger("uvicorn.access")
    # uvicorn's access line: '%s - "%s %s HTTP/%s" %d' with the path and its query string
    record = access.makeRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", "/items/3/media?token=s3cret&x=1", "1.1", 200), None)
    for f in access.filters:
        f.filter(record)
    line = record.getMessage()
    assert "s3cret" not in line and "/items/3/media?token=***&x=1" in line


def test_device_reaches_every_command(small_index, tmp_path, monkeypatch, capsys):
    """--device used to be ignored by calibrate, audit, compare and import: a bad one must now be refused there."""
    idx = str(small_index[0])
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"image": "%s", "caption": "a red circle", "label": "red"}\n' % (small_index[1] / "red.png"))
    for argv in (["calibrate", "--pairs", str(pairs), "--index", idx],
                 ["audit", "--index", idx], ["audit", "--pairs", str(pairs), "--index", idx],
                 ["compare", "--pairs", str(pairs), "--models", "tiny"],
                 ["import", str(tmp_path / "shards"), "--index", str(tmp_path / "new")]):
        assert main(["--device", "tpu", *argv]) == 2, argv
        assert "bad device 'tpu'" in capsys.readouterr().err


def test_one_version_everywhere(small_index):
    pytest.importorskip("fastapi")
    from importlib.metadata import version

    from fastapi.testclient import TestClient

    from mmretrieval.server.app import create_app

    out = subprocess.run([sys.executable, "-m", "mmretrieval.cli", "--version"], capture_output=True, text=True)
    served = TestClient(create_app(str(small_index[0]))).get("/openapi.json").json()["info"]["version"]
    assert out.stdout.strip() == f"mmretrieval {mmr.__version__}"
    assert served == mmr.__version__ == version("mmretrieval")


def test_help_and_version_import_neither_torch_nor_faiss():
    for argv in (["--help"], ["--version"], ["search", "--help"], ["index", "--help"]):
        code = ("import sys; from mmretrieval.cli import main\n"
                "try:\n    main(%r)\nexcept SystemExit:\n    pass\n"
                "heavy = [m for m in ('torch', 'faiss', 'open_clip', 'onnxruntime') if m in sys.modules]\n"
                "print('HEAVY', heavy)" % (argv,))
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert "HEAVY []" in r.stdout, (argv, r.stdout[-300:], r.stderr[-2000:])
    r = subprocess.run([sys.executable, "-c", "import mmretrieval, sys; print('torch' in sys.modules)"],
                       capture_output=True, text=True)
    assert r.stdout.strip() == "False"


def test_read_only_collection_commands_import_neither_torch_nor_open_clip(tiny_space_dir, tmp_path):
    """`mmr info`, `check`, `remove`, `compact` and `export` run no tower: faiss loads without torch (its
    import alone took over a second and ~600 MB), and the answers are those of the full path."""
    import mmretrieval as mmr

    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(10):
        (folder / f"note{i}.txt").write_text(f"note number {i} about a red circle\n")
    idx = tmp_path / "idx"
    with mmr.Engine(idx, model=str(tiny_space_dir)) as eng:
        eng.index([folder])
    for argv in (["info", "--json"], ["check"], ["remove", str(folder / "note0.txt")], ["compact"],
                 ["export", str(tmp_path / "shards")]):
        code = ("import sys; from mmretrieval.cli import main\n"
                f"rc = main({[*argv, '--index', str(idx)]!r})\n"
                "heavy = [m for m in ('torch', 'open_clip', 'torchvision') if m in sys.modules]\n"
                "print('RC', rc, 'HEAVY', heavy)")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert "RC 0 HEAVY []" in r.stdout, (argv, r.stdout[-500:], r.stderr[-2000:])
    with mmr.Engine(idx, readonly=True) as eng:
        assert eng.stats()["items"] == {"text": 9}
        assert eng.search("a red circle", k=1, types=["text"])[0].path.startswith(str(folder))  # full path: searches
