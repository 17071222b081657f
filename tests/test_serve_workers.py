"""`mmr serve --workers N`: N processes answer on one port side by side, and every one of them sees a commit made
by another process at its next request."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import mmretrieval as mmr  # noqa: E402
from mmretrieval.synth import shape_image  # noqa: E402


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


def test_two_workers_answer_side_by_side_and_see_commits(tmp_path, tiny_space_dir):
    media = tmp_path / "media"
    media.mkdir()
    for color, shape in (("red", "circle"), ("blue", "square"), ("green", "triangle")):
        shape_image(color, shape, size=64).save(media / f"{color}-{shape}.png")
    eng = mmr.Engine(tmp_path / "idx", model=str(tiny_space_dir))
    eng.index([media])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "mmretrieval.cli", "serve", "--index", str(tmp_path / "idx"),
                               "--port", str(port), "--workers", "2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                _get(base + "/healthz")
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-3000:]
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        children = subprocess.run(["pgrep", "-P", str(server.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) >= 2  # the workers (and multiprocessing's own helper, where it starts one)

        def ask(_):
            return (_get(base + "/healthz")["worker"],
                    _get(base + "/search?q=a+red+circle&k=3")[0]["path"])

        workers: set[int] = set()
        with ThreadPoolExecutor(8) as pool:
            for _ in range(20):  # which process accepts a connection is the kernel's choice: ask until both did
                answers = list(pool.map(ask, range(16)))
                workers |= {w for w, _ in answers}
                firsts = {p for _, p in answers}
                assert len(firsts) == 1  # every worker gives the same first hit (the tiny space's, whatever it is)
                if len(workers) == 2:
                    break
        assert len(workers) == 2 and server.pid not in workers

        # another process commits; every worker's next answer has it
        shape_image("yellow", "circle", size=64).save(media / "yellow-circle.png")
        eng.index([media])
        want = eng.stats()["items_total"]
        with ThreadPoolExecutor(8) as pool:
            totals = list(pool.map(lambda _: _get(base + "/stats")["items_total"], range(32)))
        assert set(totals) == {want}
    finally:
        eng.close()
        os.killpg(server.pid, signal.SIGINT)  # uvicorn's supervisor stops its workers on SIGINT
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
