"""The learned bridge between two spaces (`mmretrieval/bridge.py`): each kind recovers a known map from paired
vectors, generalises to items it was not fitted on, and survives a save and a load."""
from __future__ import annotations

import numpy as np
import pytest

from mmretrieval import bridge
from mmretrieval.errors import UsageError


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def pairs(n: int, d_old: int = 32, d_new: int = 48, bend: float = 0.0, seed: int = 0):
    """Old vectors and the new space's: a random linear map, plus a non-linear bend of strength `bend`."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d_old, d_new)) / np.sqrt(d_old)
    x = unit(rng.standard_normal((n, d_old)))
    y = x @ a + bend * np.tanh(3 * x[:, :1]) * rng.standard_normal((1, d_new))
    return x, unit(y)


def mean_cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.einsum("ij,ij->i", a, b).mean())


def test_procrustes_recovers_a_rotation_exactly():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((24, 24)))
    x = unit(rng.standard_normal((60, 24)))
    b = bridge.fit("procrustes", x, unit(x @ q))
    held = unit(rng.standard_normal((100, 24)))
    assert mean_cos(b.apply(held), unit(held @ q)) > 0.9999


def test_every_kind_generalises_and_the_residual_learns_the_bend(tmp_path):
    x, y = pairs(1200, bend=0.6)
    fit_x, fit_y, held_x, held_y = x[:800], y[:800], x[800:], y[800:]
    got = {}
    for kind in bridge.KINDS:
        b = bridge.fit(kind, fit_x, fit_y)
        out = b.apply(held_x)
        assert out.dtype == np.float32 and out.shape == held_y.shape
        assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
        got[kind] = mean_cos(out, held_y)
        b.save(tmp_path / f"{kind}.npz")
        again = bridge.Bridge.load(tmp_path / f"{kind}.npz")
        assert again.kind == kind and np.array_equal(again.apply(held_x), out)
    # a general linear map: ridge fits it better than an orthogonal one; the bend is what the MLP adds
    assert got["ridge"] > got["procrustes"] + 0.01
    assert got["residual"] > got["ridge"] + 0.005, got
    assert got["ridge"] > 0.9


def test_bad_arguments_name_what_is_valid():
    x, y = pairs(10)
    with pytest.raises(UsageError, match="procrustes, ridge, residual"):
        bridge.fit("mlp", x, y)
    with pytest.raises(UsageError, match="same items"):
        bridge.fit("ridge", x, y[:5])


def test_held_out_says_whether_searching_through_the_bridge_beats_staying():
    rng = np.random.default_rng(3)
    x = unit(rng.standard_normal((600, 64)))
    rotation, _ = np.linalg.qr(rng.standard_normal((64, 64)))
    good = bridge.held_out("ridge", x, unit(x @ rotation))  # an exact map: ties with the old space
    assert good.pairs == 120 and good.old == 1.0 and good.bridged > 0.98 and good.holds_up
    # the same space again, but too few pairs to learn 64 dimensions from: the bridge loses what staying keeps
    few = bridge.held_out("ridge", x[:30], x[:30])
    assert few.old == 1.0 and few.bridged < 0.9 and not few.holds_up
