from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the network
os.environ.setdefault("MMR_OFFLINE", "1")
# Module- and session-scoped fixtures run outside the per-test cache below: they get one of their own, so no
# test writes to the user's ~/.cache/mmretrieval (ONNX exports, calibrations, weight hashes).
_SESSION_CACHE = tempfile.mkdtemp(prefix="mmr-test-cache-")
os.environ["MMR_CACHE"] = _SESSION_CACHE
atexit.register(shutil.rmtree, _SESSION_CACHE, True)
# Towers run under torch here: an ONNX export per test (each has its own cache) would cost seconds each.
# test_onnx_runtime.py tests the other runtime, and test_first_run.py the user's default (auto).
os.environ.setdefault("MMR_BACKEND", "torch")

from tiny_space import make_tiny_space  # noqa: E402


@pytest.fixture(scope="session")
def tiny_space_dir(tmp_path_factory) -> Path:
    return make_tiny_space(tmp_path_factory.mktemp("spaces") / "tiny")


@pytest.fixture(scope="session")
def tiny_space_noaudio_dir(tmp_path_factory) -> Path:
    return make_tiny_space(tmp_path_factory.mktemp("spaces") / "tiny-noaudio", name="test-tiny-noaudio", audio=False)


@pytest.fixture(scope="session")
def tiny_space(tiny_space_dir):
    from mmretrieval.space.runtime import Space
    from mmretrieval.space.registry import load_space_dir

    return Space(load_space_dir(tiny_space_dir))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MMR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("MMR_INDEX", raising=False)
