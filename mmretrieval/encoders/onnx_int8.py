"""int8 recipes for exported towers: dynamic (open_clip's text and image towers) and static (audio networks).

Dynamic int8 quantises each MatMul's activations at run time, by their range. ONNX Runtime takes that range
over the whole call, so an item's vector would depend on the items batched with it (cosine 0.9998 between
batch 1 and 32: the same file would embed differently here and on a Ray worker). Item by item it does not,
but a call per image left the image tower at ~52 img/s on 2 Zen 4 cores where a batch of 8 ran ~65.
`scales_per_item` rewrites the graph so each item's range is taken over that item alone: a batch gives
each item the very vector it gets alone (bit for bit, tested), and batches run whole (57 img/s: its own
ops cost what ONNX Runtime's fused DynamicQuantizeMatMul saves). One item keeps the plain graph, whose
fused kernels are faster there (`OrtTower`). Padding is part of an item's input, so texts batch only
with texts of their own length (`encoders.text`).

On x86 CPUs without VNNI, ONNX Runtime's u8 x s8 kernels add pairs of products in 16 bits (``vpmaddubsw``),
which saturates. ONNX Runtime's documented remedy, 7-bit weights (``reduce_range``), is not always better: on
such a CPU (an AMD EPYC without AVX-512) the shipped tiny text tower went from cosine 0.998 of fp32 to 0.9994
with it, but a ViT-B-32 image tower from 0.9992 to 0.9972. So where `saturating_cpu`, an export is quantised both
ways and keeps the one closer to fp32 on the export's probes (`onnx_runtime.load_tower`), in a folder of its own
(`export_tag`): an export made on a CPU with VNNI is not reused there, nor the other way round.
"""
from __future__ import annotations

import logging
import platform
from collections import defaultdict
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..cpu import cpu_flags
from ..index.segments import atomic_write


X86 = ("x86_64", "amd64", "i386", "i686", "x86")
VNNI = {"avx512_vnni", "avx_vnni", "amx_int8"}


@lru_cache(maxsize=1)
def saturating_cpu() -> bool:
    """An x86 CPU whose int8 dot products saturate (no VNNI): weights are quantised to 7 bits there. Where the
    flags cannot be read on x86, assumed so (7-bit weights cost little precision; saturation costs much)."""
    if platform.machine().lower() not in X86:
        return False
    flags = cpu_flags()
    return flags is None or not (flags & VNNI)


def export_tag() -> str:
    """What the int8 recipe on this CPU adds to the exports' folder name (`onnx_runtime.export_files`)."""
    return "-sat" if saturating_cpu() else ""


def quantize_dynamic(src: Path, dst: Path, batched: Path | None = None, reduce_range: bool = False) -> bool:
    """Dynamic int8 of every MatMul (and embedding table) into `dst`; convolutions stay fp32: ONNX Runtime's
    ConvInteger took 4.5 ms of a 30 ms ViT-B-32 image for a patch embedding that costs 0.2 GFLOP, and
    quantising raw pixels is where int8 loses the most (per-image int8 ran 39 img/s with it in fp32, 34
    without, same cosine to fp32). `batched`: the same graph with its activations scaled per item
    (`scales_per_item`), where the rewrite fits (True) and `batched` was asked for. `reduce_range`: 7-bit weights
    (see the module doc)."""
    import onnx
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    convs = [n.name for n in onnx.load(str(src), load_external_data=False).graph.node if n.op_type == "Conv"]
    with quiet_quantiser():
        atomic_write(dst, lambda out: ort_quantize_dynamic(str(src), out, weight_type=QuantType.QInt8,
                                                           nodes_to_exclude=convs, reduce_range=reduce_range))
    if batched is None:
        return False
    model = onnx.load(str(dst))
    if not scales_per_item(model):
        return False
    atomic_write(batched, lambda out: onnx.save(model, out))
    return True


def scales_per_item(model: Any) -> bool:
    """Rewrite, in place, each ``DynamicQuantizeLinear -> MatMulInteger`` pair of a batch-first graph so the
    activations' scale and zero point are taken per item (over all axes but the first) with the same formula
    (ONNX's DynamicQuantizeLinear). MatMulInteger takes one zero point per call, so it runs with zero and the
    item's share, ``zero_point x column sums of the weights``, is subtracted in int32: exact. False (and the
    model untouched) where a quantised input's rank is unknown or the pattern differs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    shapes = onnx.shape_inference.infer_shapes(model).graph.value_info
    rank = {v.name: len(v.type.tensor_type.shape.dim) for v in shapes if v.type.tensor_type.HasField("shape")}
    weights = {i.name: i for i in g.initializer}
    users: dict[str, list[Any]] = defaultdict(list)
    for n in g.node:
        for i in n.input:
            users[i].append(n)
    pairs = []
    for n in g.node:
        if n.op_type != "DynamicQuantizeLinear":
            continue
        x, q, _, zp = n.input[0], *n.output
        mm = users[q]
        if (rank.get(x, 0) < 2 or len(mm) != 1 or mm[0].op_type != "MatMulInteger" or users[zp] != mm
                or mm[0].input[1] not in weights):
            return False
        pairs.append((n, mm[0]))
    if not pairs:
        return False

    consts = {"per_item/zero": np.array(0, np.float32), "per_item/255": np.array(255, np.float32),
              "per_item/tiny": np.array(np.finfo(np.float32).tiny, np.float32),
              "per_item/zero_u8": np.array(0, np.uint8), "per_item/flat": np.array([-1], np.int64)}
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    node = helper.make_node
    replace: dict[int, list[Any]] = {}
    for dq, mm in pairs:
        x, q, scale, zp = dq.input[0], *dq.output
        p = f"{dq.output[0]}/per_item/"
        w = numpy_helper.to_array(weights[mm.input[1]]).astype(np.int64)
        if len(mm.input) > 3 and mm.input[3]:
            w = w - numpy_helper.to_array(weights[mm.input[3]]).astype(np.int64)
        g.initializer.append(numpy_helper.from_array(w.sum(axis=0).astype(np.int32), p + "column_sums"))
        out = mm.output[0]
        replace[id(dq)] = [  # DynamicQuantizeLinear's formula, reduced per item
            node("ReduceMax", [x], [p + "max"], axes=list(range(1, rank[x])), keepdims=1),
            node("ReduceMin", [x], [p + "min"], axes=list(range(1, rank[x])), keepdims=1),
            node("Max", [p + "max", "per_item/zero"], [p + "max0"]),
            node("Min", [p + "min", "per_item/zero"], [p + "min0"]),
            node("Sub", [p + "max0", p + "min0"], [p + "range"]),
            node("Div", [p + "range", "per_item/255"], [p + "scale"]),
            node("Max", [p + "scale", "per_item/tiny"], [scale]),  # an all-zero item: 0, not NaN
            node("Div", [p + "min0", scale], [p + "zp_neg"]),
            node("Round", [p + "zp_neg"], [p + "zp_neg_r"]),
            node("Neg", [p + "zp_neg_r"], [p + "zp_f"]),
            node("Cast", [p + "zp_f"], [p + "zp_u8"], to=TensorProto.UINT8),
            node("Cast", [p + "zp_f"], [p + "zp_i32"], to=TensorProto.INT32),
            node("Reshape", [scale, "per_item/flat"], [p + "scale_1d"]),
            node("Reshape", [p + "zp_u8", "per_item/flat"], [p + "zp_1d"]),
            node("QuantizeLinear", [x, p + "scale_1d", p + "zp_1d"], [q], axis=0),
        ]
        mm.input[2] = "per_item/zero_u8"
        mm.output[0] = p + "product"
        replace[id(mm)] = [mm, node("Mul", [p + "zp_i32", p + "column_sums"], [p + "offset"]),
                           node("Sub", [p + "product", p + "offset"], [out])]
    rewritten = [m for n in g.node for m in replace.get(id(n), [n])]
    del g.node[:]
    g.node.extend(rewritten)
    return True


@contextmanager
def quiet_quantiser() -> Iterator[None]:
    """ONNX Runtime's quantiser logs advice and shape notes on the root logger (consider pre-processing, an
    axis out of range for a 1-D weight it then quantises per tensor): nothing a user of `mmr` acts on."""
    def theirs(record: logging.LogRecord) -> bool:
        return "/onnxruntime/quantization/" not in record.pathname.replace("\\", "/")

    root = logging.getLogger()
    root.addFilter(theirs)
    try:
        yield
    finally:
        root.removeFilter(theirs)


def quantize_static(src: Path, dst: Path, batches: list[np.ndarray], input_name: str,
                    reduce_range: bool = False) -> None:
    """Static int8 (QDQ): weights per output channel, activation scales from `batches` (min/max)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{input_name: b} for b in batches])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"  # shapes inferred and BatchNorm folded, as the quantiser expects
        with quiet_quantiser():
            quant_pre_process(str(src), str(pre))
            atomic_write(dst, lambda out: ort_quantize_static(str(pre), out, Reader(), quant_format=QuantFormat.QDQ,
                                                              per_channel=True, activation_type=QuantType.QUInt8,
                                                              weight_type=QuantType.QInt8,
                                                              reduce_range=reduce_range))
