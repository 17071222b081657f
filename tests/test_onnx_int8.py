"""int8 with activations scaled per item (`encoders.onnx_int8.scales_per_item`): a batch gives each item the
vector ONNX Runtime's own dynamic int8 gives it alone, whatever its batch mates."""
import numpy as np
import pytest
import torch
from torch import nn

from mmretrieval.encoders import onnx_runtime
from mmretrieval.encoders.onnx_int8 import quantize_dynamic
from mmretrieval.encoders.ort_tower import OrtTower

pytestmark = [pytest.mark.skipif(not onnx_runtime.available(), reason="onnxruntime is a dependency; missing here"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]  # torch's legacy exporter, which the towers use


class Block(nn.Module):
    """A transformer MLP block's shape of work, batch first; `batch_second` runs its tokens batch second (as
    older open_clip transformers did), where per-item scales would span the wrong axis."""

    def __init__(self, width: int = 48, batch_second: bool = False) -> None:
        super().__init__()
        self.ln, self.fc1, self.fc2, self.proj = nn.LayerNorm(width), nn.Linear(width, 4 * width), \
            nn.Linear(4 * width, width), nn.Linear(width, 16)
        self.batch_second = batch_second

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch_second:
            x = x.permute(1, 0, 2)
        x = x + self.fc2(nn.functional.gelu(self.fc1(self.ln(x))))
        if self.batch_second:
            x = x.permute(1, 0, 2)
        return self.proj(x.mean(1))  # a 2-D MatMul input too


def _export(module: nn.Module, tmp_path, name: str):
    torch.manual_seed(0)
    src = tmp_path / f"{name}.onnx"
    x = torch.randn(3, 10, 48)
    torch.onnx.export(module.eval(), (x,), str(src), dynamo=False, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=onnx_runtime.OPSET)
    return src


def _items(x: np.ndarray) -> np.ndarray:
    """Eight items of different ranges: an item's scale set by its own outliers."""
    x = x.copy()
    for i in range(len(x)):
        x[i] *= 0.2 + i
        x[i, i % x.shape[1], i % x.shape[2]] += 10 * i
    return x


def test_batched_items_get_the_vectors_of_plain_dynamic_int8_run_alone(tmp_path):
    torch.manual_seed(1)
    src = _export(Block(), tmp_path, "block")
    plain, ours = tmp_path / "plain.onnx", tmp_path / "ours.onnx"
    assert quantize_dynamic(src, plain, ours) and not quantize_dynamic(src, tmp_path / "alone.onnx")
    x = _items(np.random.default_rng(0).standard_normal((8, 10, 48)).astype(np.float32))
    batched = OrtTower(ours, "x")(x)
    alone = np.concatenate([OrtTower(plain, "x")(x[i:i + 1]) for i in range(len(x))])
    assert np.abs(batched - alone).max() <= 1e-5 * np.abs(alone).max()
    assert np.array_equal(batched[3:5], OrtTower(ours, "x")(x[3:5]))  # other batch mates: the same vectors
    # what ONNX Runtime's own graph does to a batch: every item scaled by the batch's range
    mixed = OrtTower(plain, "x")(x)
    assert np.abs(mixed - alone).max() > 100 * np.abs(batched - alone).max() + 1e-6
    # a tower runs one item on the plain graph, a batch on the rewritten one
    tower = OrtTower(plain, "x", lazy=True, batched=ours)
    assert np.array_equal(tower(x), batched) and np.array_equal(tower(x[:1]), alone[:1])


def test_a_batch_second_graph_is_caught_by_the_check_and_runs_item_by_item(tmp_path):
    """The rewrite reduces over every axis but the first; a graph whose batch is elsewhere gets vectors that
    depend on batch mates, which `batch_independent`'s comparison catches (the tower then runs per item)."""
    torch.manual_seed(1)
    src = _export(Block(batch_second=True), tmp_path, "second")
    plain, ours = tmp_path / "plain.onnx", tmp_path / "ours.onnx"
    assert quantize_dynamic(src, plain, ours)
    x = _items(np.random.default_rng(0).standard_normal((8, 10, 48)).astype(np.float32))
    alone = np.concatenate([OrtTower(plain, "x")(x[i:i + 1]) for i in range(len(x))])
    assert np.abs(OrtTower(ours, "x")(x) - alone).max() > 1e-3 * np.abs(alone).max()
    assert np.array_equal(OrtTower(plain, "x", per_item=True)(x), alone)
