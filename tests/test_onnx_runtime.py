"""The ONNX Runtime backend: exported from the space's own modules, verified, cached, chosen by measurement;
int8 as a precision of its own (in the fingerprint), fp32 as a backend (not: same vectors)."""
import json
import os

import numpy as np
import pytest
import torch

import mmretrieval as mmr
from mmretrieval.cli import main
from mmretrieval.encoders import clip_export, onnx_runtime, ort_tower
from mmretrieval.encoders.audio_export import audio_export
from mmretrieval.errors import SpaceError, UsageError
from mmretrieval.space.backend import parse_backend
from mmretrieval.space.runtime import Space
from mmretrieval.train.corpus import generate
from test_precision import _top10_same_up_to_ties

pytestmark = pytest.mark.skipif(not onnx_runtime.available(), reason="onnxruntime is a dependency; missing here")


def all_backends(space: Space) -> dict[str, str]:
    """The runtime of every tower (`backends` holds the loaded towers': the audio tower loads at first need)."""
    dict(space.encoders)
    return space.backends


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    root = tmp_path_factory.mktemp("heldout")
    generate(root, seed=2000, images_per_class=4, sounds_per_class=1)
    rows = [json.loads(line) for line in (root / "pairs.jsonl").read_text().splitlines()]
    texts = sorted({r["caption"] for r in rows})
    images = sorted({str(root / r["image"]) for r in rows if r.get("image")})
    return texts, images


@pytest.fixture(scope="module")
def reference(heldout):
    texts, images = heldout
    ref = Space(mmr.resolve_model_arg("tiny"), precision="fp32", backend="torch")
    return ref.text.encode(texts), ref.image.encode(images), ref.fingerprint


def test_fp32_export_gives_torch_vectors_and_is_cached(heldout, reference, tmp_path, monkeypatch):
    texts, images = heldout
    t_ref, i_ref, fp = reference
    sp = Space(mmr.resolve_model_arg("tiny"), precision="fp32", backend="onnx")
    assert all_backends(sp) == {"text": "onnx", "image": "onnx", "audio": "torch"}
    assert sp.fingerprint == fp  # the runtime does not move vectors: same fingerprint, same index
    assert np.abs(sp.text.encode(texts) - t_ref).max() < 1e-5  # texts of every length, batched and trimmed
    assert np.abs(sp.image.encode(images) - i_ref).max() < 1e-5
    files = sorted(p.name for p in (tmp_path / "cache" / "onnx").rglob("*") if p.is_file())
    assert files == ["image.fp32.json", "image.fp32.onnx", "image.fp32.onnx.data", "text.fp32.json", "text.fp32.onnx",
                     "text.fp32.onnx.data"]  # the weights beside each graph (ONNX external data)
    # a second load reads the cache: no export, no verification
    export, verify = onnx_runtime._export, onnx_runtime.verify
    monkeypatch.setattr(onnx_runtime, "_export", lambda *a: pytest.fail("exported again"))
    monkeypatch.setattr(onnx_runtime, "verify", lambda *a: pytest.fail("verified again"))
    again = Space(mmr.resolve_model_arg("tiny"), precision="fp32", backend="onnx")
    assert not again.text.runner._sessions and not again.image.runner._sessions  # opened at first use
    np.testing.assert_array_equal(again.text.encode(texts[:5]), sp.text.encode(texts[:5]))
    assert again.text.runner._sessions and not again.image.runner._sessions  # a text search
    monkeypatch.setattr(onnx_runtime, "_export", export)
    monkeypatch.setattr(onnx_runtime, "verify", verify)
    # a damaged cached file is exported again, not a crash
    (cached,) = (tmp_path / "cache" / "onnx").rglob("image.fp32.onnx")
    cached.write_bytes(b"not an onnx model")
    healed = Space(mmr.resolve_model_arg("tiny"), precision="fp32", backend="onnx")
    assert np.abs(healed.image.encode(images[:4]) - i_ref[:4]).max() < 1e-5 and cached.stat().st_size > 1000
    # damaged in place, same size (it used to load and give wrong vectors): refused at first use, then exported
    # again by the next load
    (text,) = (tmp_path / "cache" / "onnx").rglob("text.fp32.onnx.data")  # its weights
    data = bytearray(text.read_bytes())
    data[len(data) // 2:len(data) // 2 + 4096] = b"\xff" * 4096
    text.write_bytes(bytes(data))
    damaged = Space(mmr.resolve_model_arg("tiny"), precision="fp32", backend="onnx")
    with pytest.raises(SpaceError, match="is damaged.*run the command again"):
        damaged.text.encode(texts[:2])
    again = Space(mmr.resolve_model_arg("tiny"), precision="fp32", backend="onnx")
    assert np.abs(again.text.encode(texts) - t_ref).max() < 1e-5 and text.read_bytes() != bytes(data)
    graph = text.with_name("text.fp32.onnx")  # the graph damaged in place: said the same way, not a parse error
    g = bytearray(graph.read_bytes())
    g[len(g) // 2:len(g) // 2 + 64] = b"\xff" * 64
    graph.write_bytes(bytes(g))
    with pytest.raises(SpaceError, match="is damaged"):
        Space(mmr.resolve_model_arg("tiny"), precision="fp32", backend="onnx").text.encode(texts[:2])
    again = Space(mmr.resolve_model_arg("tiny"), precision="fp32", backend="onnx")
    assert np.abs(again.text.encode(texts) - t_ref).max() < 1e-5


def test_an_export_copies_its_tower_only_and_leaves_the_model_as_it_was(tmp_path):
    """A first run held the model and a whole copy of it per export (ViT-B-32: 3.6 GB at its peak, 2.7 since)."""
    from torch import nn

    from mmretrieval.space.towers import _create_clip

    space = Space(mmr.resolve_model_arg("tiny"), precision="fp32", backend="torch")
    model = _create_clip(space.resolved, torch.device("cpu"), "tiny").eval()  # as loaded for an export
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for modality, own, other in (("image", "visual", "transformer"), ("text", "transformer", "visual")):
        m = clip_export.export_copy(model, modality)
        assert getattr(m, other) is getattr(model, other)  # shared: never traced
        assert getattr(m, own) is not getattr(model, own)
        assert all(p.data_ptr() != q.data_ptr() for p, q in zip(getattr(m, own).parameters(),
                                                                getattr(model, own).parameters()))
        tower = onnx_runtime.load_tower(lambda: clip_export.clip_export(model, modality), modality, "fp32", "k",
                                        tmp_path)
        probe = clip_export.probe(model, modality)
        with torch.inference_mode():
            ref = clip_export.ClipTower(model, modality)(probe).numpy()
        assert np.abs(tower(probe.numpy()) - ref).max() < 1e-4
    assert all(type(b.attn) is nn.MultiheadAttention for b in model.modules() if hasattr(b, "attn"))
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_processes_exporting_the_same_tower_take_turns(tmp_path, monkeypatch):
    """Ray actors starting together once exported one tower at the same time, and one lost a file ONNX Runtime's
    quantiser writes beside the graph under a fixed name: now one exports, the others read its export."""
    import threading
    import time

    from mmretrieval.space.towers import _create_clip

    space = Space(mmr.resolve_model_arg("tiny"), precision="fp32", backend="torch")
    model = _create_clip(space.resolved, torch.device("cpu"), "tiny").eval()
    inside, most, exports, export = [0], [0], [0], onnx_runtime._export_tower

    def slow_export(*a, **k):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        exports[0] += 1
        time.sleep(0.3)  # long enough for the others to arrive meanwhile
        try:
            return export(*a, **k)
        finally:
            inside[0] -= 1

    monkeypatch.setattr(onnx_runtime, "_export_tower", slow_export)
    towers, errors = [], []

    def load():  # each thread opens the folder itself: flock treats them as other processes do
        try:
            towers.append(onnx_runtime.load_tower(lambda: clip_export.clip_export(model, "image"), "image", "int8",
                                                  "k", tmp_path))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(towers) == 3 and most[0] == 1 and exports[0] == 1
    probe = clip_export.probe(model, "image").numpy()
    assert all(np.array_equal(t(probe), towers[0](probe)) for t in towers)


def test_towers_run_from_cached_exports_without_building_the_torch_model(heldout, reference, monkeypatch):
    """The torch modules (~1.3 s and ~1.2 GB for ViT-B-32) are built only where something needs them: not for
    queries and indexing when every tower runs from a cached export; a tower left in torch builds them at its
    first use, and training gets them through `Space.model`."""
    from mmretrieval.space import towers

    texts, images = heldout
    t_ref, i_ref, _ = reference
    spec = mmr.resolve_model_arg("tiny")
    first = Space(spec, precision="fp32", backend="onnx")  # exports both towers (builds the model for that)
    assert first.clip_model._loaded is None and first.clip_model._ready is None  # and lets it go
    create, built = towers._create_clip, []
    monkeypatch.setattr(towers, "_create_clip", lambda *a: built.append(a) or create(*a))

    sp = Space(spec, precision="fp32", backend="onnx")
    assert np.abs(sp.text.encode(texts) - t_ref).max() < 1e-5
    assert np.abs(sp.image.encode(images) - i_ref).max() < 1e-5
    assert built == [] and not sp.text.model_built and not sp.image.model_built
    assert sp.dim == t_ref.shape[1]
    model = sp.model  # training and evaluation reach for it: built now, once, ready for inference
    assert len(built) == 1 and sp.model is model and sp.text.model is model and sp.image.model is model
    assert sp.image.tokens == int(np.prod(model.visual.grid_size)) + 1  # read from the config, as the model has it

    Space(spec, precision="image=int8,audio=fp32", backend="onnx")  # exported
    built.clear()  # an index run of photos, int8 one per core: the decode threads encode, nothing is built
    int8 = Space(spec, precision="image=int8,audio=fp32", backend="onnx")
    assert int8.image.per_core() > 0
    np.testing.assert_array_equal(int8.image.encode_here(images[:3]), int8.image.encode(images[:3]))
    assert built == []

    built.clear()  # text from its export, images in torch (bf16): a text query still builds nothing
    mixed = Space(spec, precision="image=bf16,text=fp32,audio=fp32", backend="onnx")
    assert mixed.backends["image"] == "torch" and mixed.backends["text"] == "onnx"
    np.testing.assert_array_equal(mixed.text.encode(texts[:3]), sp.text.encode(texts[:3]))
    assert built == []
    assert (mixed.image.encode(images[:2]) * i_ref[:2]).sum(1).min() > 0.999 and len(built) == 1
    assert next(mixed.model.visual.parameters()).dtype == torch.bfloat16  # cast as the precision says


def test_a_servers_warm_up_opens_every_towers_runtime(tmp_path):
    """`mmr serve` warms up in the background; the image tower's warm-up used to raise (a name clash with
    `ImageEncoder.prepare(item)`, swallowed there), so the first image query still opened its session."""
    from mmretrieval.server.app import warm_up

    def engine() -> mmr.Engine:
        return mmr.Engine(tmp_path / "idx", model="tiny", precision="image=int8,audio=fp32", backend="onnx")

    first = engine()
    assert first.space.image.runner._sessions  # exported and verified here: its sessions opened
    first.close()
    eng = engine()  # a server's: towers read back from the cache, sessions opened at first use
    warm_up(eng).join(timeout=300)
    assert eng.space.text.runner._sessions and eng.space.image.runner._sessions
    eng.close()


def test_exports_are_shared_by_spaces_that_differ_only_in_input_preparation(tmp_path, monkeypatch):
    """Two decode scales, two fingerprints, one network: one set of ONNX exports."""
    monkeypatch.setenv("MMR_CACHE", str(tmp_path / "cache"))
    spec = mmr.resolve_model_arg("tiny")
    one = Space(spec, precision="image=int8,audio=fp32", jpeg_draft=1)
    two = Space(spec, precision="image=int8,audio=fp32", jpeg_draft=2)
    assert one.fingerprint != two.fingerprint and one.image.runner.path == two.image.runner.path
    assert len(list((tmp_path / "cache" / "onnx").iterdir())) == 1


def test_int8_towers_close_to_fp32_on_shipped_heldout(heldout, reference):
    texts, images = heldout
    t_ref, i_ref, fp = reference
    sp = Space(mmr.resolve_model_arg("tiny"), precision="int8")
    assert (sp.precision["text"], sp.precision["image"]) == ("int8", "int8")
    assert sp.identity["precision"]["image"] == sp.identity["precision"]["text"] == "int8" and sp.fingerprint != fp
    t8, i8 = sp.text.encode(texts), sp.image.encode(images)
    assert np.einsum("ij,ij->i", t8, t_ref).min() >= 0.999
    assert np.einsum("ij,ij->i", i8, i_ref).min() >= 0.999
    # int8 moves vectors ~10x more than bf16 (cosine ~0.9996 vs ~0.99995): swaps of items whose reference
    # scores are within 0.02 (measured: up to 0.014) count as near-ties here, 0.01 for bf16
    _top10_same_up_to_ties(t_ref @ i_ref.T, t_ref @ i8.T, eps=0.02)
    _top10_same_up_to_ties(i_ref @ t_ref.T, i8 @ t_ref.T, eps=0.02)
    _top10_same_up_to_ties(t_ref @ i_ref.T, t8 @ i8.T, eps=0.02)
    # the patch embedding stays fp32 (ONNX Runtime's ConvInteger was slow and quantises raw pixels)
    import onnx

    def ops(path):
        return {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}

    assert "Conv" in ops(sp.image.runner.path) and "ConvInteger" not in ops(sp.image.runner.path)
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= ops(sp.image.runner.path)  # one item: the plain graph
    # a batch: activations scaled per item (onnx_int8.scales_per_item), each item as if alone
    assert {"MatMulInteger", "QuantizeLinear"} <= ops(sp.image.runner.batched)
    assert "DynamicQuantizeLinear" not in ops(sp.image.runner.batched)
    for runner in (sp.text.runner, sp.image.runner):
        assert runner.equal_shapes and not runner.per_item
    assert np.array_equal(i8[:5], np.concatenate([sp.image.encode([f]) for f in images[:5]]))
    assert np.array_equal(t8, np.concatenate([sp.text.encode([t]) for t in texts]))  # lengths mixed
    runner, calls = sp.text.runner, []

    class Spy:
        per_item, equal_shapes = runner.per_item, runner.equal_shapes

        def __call__(self, x):
            calls.append(x.shape)
            return runner(x)

    sp.text.runner = Spy()
    sp.text.encode(["a red circle", "a blue square", "a small red circle on grey"])
    (two, width), (one, other) = sorted(calls, reverse=True)  # one call per length, each at its length
    assert (two, one) == (2, 1) and width < other
    assert {runner.path, runner.batched} <= set(runner._sessions)  # one text: the plain graph; two: batched
    # a damaged batched graph is caught as the cache is read, and exported again
    sp.image.runner.batched.write_bytes(b"not an onnx model")
    healed = Space(mmr.resolve_model_arg("tiny"), precision="int8")
    assert np.array_equal(healed.image.encode(images), i8) and healed.image.runner.batched.stat().st_size > 1000


def test_int8_images_are_encoded_by_the_threads_that_decode_them(heldout, tmp_path, monkeypatch):
    """Indexing, each decode thread encodes the images it decoded, one at a time on its core (a session
    without a pool): the same vectors as a batch and as a query, no batched graph opened; a failure there
    skips that file alone and the run goes on."""
    import shutil
    import threading
    from pathlib import Path

    from mmretrieval.encoders.ort_tower import OrtTower
    from mmretrieval.ingest.embed import ENCODER_BUG, Embedder

    _, images = heldout
    d = tmp_path / "photos"
    d.mkdir()
    for f in images[:12]:
        shutil.copy(f, d / Path(f).name)
    fresh = Space(mmr.resolve_model_arg("tiny"), precision="image=int8").image  # exported (and verified) here
    eng = mmr.Engine(tmp_path / "idx", model="tiny", precision="image=int8")
    runner = eng.space.image.runner
    assert eng.space.image.per_core() == runner.threads >= 1 and eng.space.text.per_core() == 0
    assert Embedder(eng.space).workers == runner.threads  # as many workers as the tower's cores
    wide = OrtTower(runner.path, "pixels", ort_tower.PER_CORE_MAX_CORES + 1, lazy=True, batched=runner.batched)
    assert wide.per_core == 0  # on many cores every item would read all the weights: batches stay
    assert Embedder(Space(mmr.resolve_model_arg("tiny"), precision="fp32")).workers == min(4, os.cpu_count())
    real, threads = OrtTower.on_this_thread, set()

    def spy(self, x):
        threads.add(threading.current_thread().name)
        return real(self, x)

    monkeypatch.setattr(OrtTower, "on_this_thread", spy)
    rep = eng.index([d])
    assert rep.added["image"] == 12 and threads and all(t.startswith("mmr-decode") for t in threads)
    assert set(runner._sessions) == {(runner.path, 1)}  # neither the batched graph nor the query's session
    ids = {h.path: h.id for h in eng.search("x", k=20, types=["image"])}
    files = sorted(str(p) for p in d.iterdir())
    stored = eng.store.vectors.reconstruct(np.array([ids[f] for f in files]))
    assert np.array_equal(stored, fresh.encode(files))  # batched graph, 12 at once
    assert np.array_equal(stored[:3], np.concatenate([fresh.encode([f]) for f in files[:3]]))  # as queries

    bad = eng.space.image.prepare(files[4]).numpy()

    def flaky(self, x):
        if np.array_equal(x[0], bad):
            raise RuntimeError("onnxruntime: [ShapeInferenceError] something internal")
        return real(self, x)

    monkeypatch.setattr(OrtTower, "on_this_thread", flaky)
    again = mmr.Engine(tmp_path / "idx2", model="tiny", precision="image=int8")
    rep = again.index([d])
    assert rep.added["image"] == 11 and rep.skipped == [(files[4], ENCODER_BUG)] and again.check()["consistent"]


def test_long_int8_texts_run_one_per_core_with_the_vectors_they_get_alone(heldout, monkeypatch):
    """Texts at or above `PER_CORE_MIN_TOKENS` (the shipped space's are shorter: the bar is lowered here) run
    item by item, one per thread, each as if alone; shorter ones keep their batched call."""
    from mmretrieval.encoders import exported_text as text_module

    texts, _ = heldout
    sp = Space(mmr.resolve_model_arg("tiny"), precision="text=int8")
    alone = np.concatenate([sp.text.encode([t]) for t in texts])
    lengths = sorted(len(sp.text.tokenizer.encode(t)) for t in texts)
    monkeypatch.setattr(text_module, "PER_CORE_MIN_TOKENS", lengths[len(lengths) // 2] + 2)
    runner, calls = sp.text.runner, []
    real = type(runner).across_cores

    def spy(self, items):
        calls.extend(len(x) for x in items)
        return real(self, items)

    monkeypatch.setattr(type(runner), "across_cores", spy)
    assert np.array_equal(sp.text.encode(texts), alone)
    assert calls and min(calls) >= text_module.PER_CORE_MIN_TOKENS and len(set(calls)) > 1  # lengths mixed
    assert len(calls) < len(texts)  # the shorter ones were batched
    assert {(runner.path, 1), runner.batched} <= set(runner._sessions)


def test_auto_measures_once_and_remembers(tmp_path, monkeypatch):
    spec = mmr.resolve_model_arg("tiny")
    sp = Space(spec, precision="fp32", backend="auto")
    known = json.loads((tmp_path / "cache" / "backends.json").read_text())
    assert len(known) == 2 and {k.split("|")[1] for k in known} == {"text", "image"}
    for key, rec in known.items():
        assert set(rec["seconds"]) == {"torch", "onnx"}
        assert rec["seconds"][rec["choice"]] == min(rec["seconds"].values())
        modality = key.split("|")[1]
        assert sp.backends[modality] == rec["choice"]
        assert (getattr(sp, modality).runner is not None) == (rec["choice"] == "onnx")
    # remembered: a later load measures nothing, and follows the record
    monkeypatch.setattr(onnx_runtime, "timed", lambda *a, **k: pytest.fail("measured again"))
    key = next(k for k in known if "|text|" in k)
    known[key]["choice"] = "torch"
    (tmp_path / "cache" / "backends.json").write_text(json.dumps(known))
    again = Space(spec, precision="fp32", backend="auto")
    assert again.backends["text"] == "torch" and again.text.runner is None
    # bf16 is torch's and int8 ONNX Runtime's: nothing to measure
    assert all_backends(Space(spec, precision="image=bf16,text=int8,audio=bf16")) == {
        "text": "onnx", "image": "torch", "audio": "torch"}


def test_backend_errors_say_what_works(monkeypatch):
    spec = mmr.resolve_model_arg("tiny")
    with pytest.raises(UsageError, match="valid: auto, torch, onnx"):
        parse_backend("tensorrt")
    # the backend chooses for fp32 towers; bf16 has only torch, int8 only ONNX Runtime
    assert all_backends(Space(spec, precision="image=int8", backend="torch")) == {
        "text": "torch", "image": "onnx", "audio": "torch"}
    assert all_backends(Space(spec, precision="image=bf16", backend="onnx")) == {
        "text": "onnx", "image": "torch", "audio": "torch"}
    monkeypatch.setattr(onnx_runtime, "FP32_MAX_DIFF", -1.0)  # an export that does not reproduce torch is refused
    with pytest.raises(SpaceError, match="does not reproduce the torch one.*--backend torch"):
        Space(spec, precision="fp32", backend="onnx")
    monkeypatch.setattr(onnx_runtime, "available", lambda: False)
    with pytest.raises(SpaceError, match="needs ONNX Runtime, but ONNX Runtime is not installed"):
        Space(spec, precision="image=int8")
    assert all_backends(Space(spec, precision="fp32", backend="auto")) == {
        "text": "torch", "image": "torch", "audio": "torch"}


def test_cli_backend_onnx_searches_an_index_made_with_torch(tmp_path, capsys, monkeypatch):
    from media import make_media

    monkeypatch.setenv("MMR_BACKEND", "torch")  # main() sets it from --backend; restored after the test
    make_media(tmp_path / "media")
    media = tmp_path / "media"
    idx = str(tmp_path / "idx")
    assert main(["--backend", "torch", "index", str(media), "--index", idx, "--model", "tiny", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["--backend", "onnx", "search", "a red circle", "--index", idx, "--json", "--type", "image"]) == 0
    by_onnx = json.loads(capsys.readouterr().out)
    assert len(by_onnx) >= 3
    assert main(["--backend", "torch", "search", "a red circle", "--index", idx, "--json", "--type", "image"]) == 0
    by_torch = json.loads(capsys.readouterr().out)
    assert [h["path"] for h in by_onnx] == [h["path"] for h in by_torch]
    assert np.allclose([h["score"] for h in by_onnx], [h["score"] for h in by_torch], atol=1e-5)
    assert list((tmp_path / "cache" / "onnx").rglob("text.fp32.onnx"))  # the text query ran under ONNX Runtime


def test_auto_int8_for_images_is_measured_once_per_cpu_and_remembered(tmp_path, monkeypatch):
    from mmretrieval.space import backend

    calls = []

    def fake(dtype):
        calls.append(dtype)
        return {"int8": 0.010, "bfloat16": 0.0105}  # int8 faster, but not by the 10 % margin

    monkeypatch.setattr(onnx_runtime, "int8_speedup", fake)
    backend.int8_faster.cache_clear()
    try:
        assert backend.int8_faster(True) is False and len(calls) == 1
        known = json.loads((tmp_path / "cache" / "backends.json").read_text())
        (key, rec), = known.items()
        assert key.startswith("int8-vs-torch|") and key.endswith("|bf16") and rec["choice"] == "torch"
        backend.int8_faster.cache_clear()  # a new process: the record answers, nothing is measured
        assert backend.int8_faster(True) is False and len(calls) == 1
        monkeypatch.setattr(onnx_runtime, "int8_speedup", lambda dtype: {"int8": 0.005, "float32": 0.02})
        assert backend.int8_faster(False) is True  # another key (torch in fp32): measured, int8 wins
        assert mmr.space.precision.auto_precision(native_bf16=False)["image"] == "int8"
    finally:
        backend.int8_faster.cache_clear()


def test_a_stall_in_one_round_does_not_decide_a_calibration():
    """`race` keeps each contender's best round: a VM stall during one block no longer picks the slower side."""
    import time

    calls = {"stalled": 0}

    def stalled():  # 20 ms through the first round (its warm-up and 5 timed calls), then 1 ms
        calls["stalled"] += 1
        time.sleep(0.02 if calls["stalled"] <= 6 else 0.001)

    def steady():
        time.sleep(0.005)

    best = onnx_runtime.race({"stalled": stalled, "steady": steady}, rounds=3, repeats=5, budget_s=10)
    assert best["stalled"] < 0.004 < 0.005 <= best["steady"] and calls["stalled"] == 18
    calls["stalled"] = 0
    onnx_runtime.race({"stalled": stalled, "steady": steady}, rounds=3, repeats=5, budget_s=0)
    assert calls["stalled"] == 6  # the budget spent after one round: no more


def test_int8_calibration_runs_here():
    """The real measurement: both sides run and take time (which wins depends on the CPU)."""
    import torch

    seconds = onnx_runtime.int8_speedup(torch.float32, rows=64, width=128)
    assert set(seconds) == {"int8", "float32"} and all(0 < v < 1 for v in seconds.values())


def test_tower_sessions_stop_spinning_after_each_run(heldout):
    """A session's pool spinning after its run slowed the next tower's (2x alternating image and text)."""
    texts, images = heldout
    sp = Space(mmr.resolve_model_arg("tiny"), precision="fp32", backend="onnx")
    sp.text.encode(texts[:2])
    sp.image.encode(images[:2])
    for t in (sp.text, sp.image):
        opts = t.runner.session.get_session_options()
        assert opts.get_session_config_entry("session.force_spinning_stop") == "1"
        assert opts.intra_op_num_threads == t.runner.threads


def test_int8_vectors_do_not_depend_on_batch_mates(heldout):
    """Dynamic int8 scales activations per call: items run one by one, so a file embeds the same alone,
    in any batch, here or on another worker."""
    texts, images = heldout
    sp = Space(mmr.resolve_model_arg("tiny"), precision="int8")
    alone = np.stack([sp.image.encode([p])[0] for p in images[:6]])
    np.testing.assert_array_equal(sp.image.encode(images[:6], batch_size=6), alone)
    np.testing.assert_array_equal(sp.image.encode(images[3:6] + images[:3], batch_size=4)[[3, 4, 5, 0, 1, 2]], alone)
    short, long_ = texts[0], max(texts, key=len)
    np.testing.assert_array_equal(sp.text.encode([short, long_])[0], sp.text.encode([short])[0])


def test_auto_int8_falls_back_where_a_model_cannot_be_exported(tmp_path, monkeypatch):
    """auto picks int8 by the CPU before the model is built; a model the export does not cover (e.g. an
    open_clip CustomTextCLIP) gets auto's other choice, and the index records what ran. Asked-for int8 fails."""
    from mmretrieval.errors import UnsupportedPrecisionError
    from mmretrieval.space import backend

    monkeypatch.setattr(backend, "int8_faster", lambda native: True)
    monkeypatch.setattr(clip_export, "exportable", lambda model: False)
    spec = mmr.resolve_model_arg("tiny")
    sp = Space(spec, precision="auto")
    assert sp.precision["image"] in ("bf16", "fp32") and sp.backends["image"] == "torch"
    eng = mmr.Engine(tmp_path / "idx", model="tiny")
    assert eng.precision["image"] in ("bf16", "fp32") and eng.space.fingerprint == sp.fingerprint
    assert "int8" not in json.loads((tmp_path / "idx" / "space.json").read_text())["precision"]
    eng.close()
    with pytest.raises(UnsupportedPrecisionError,
                       match="image in int8 needs ONNX Runtime, but CLIP cannot be exported"):
        Space(spec, precision="image=int8")


def _wav2clip_encoder():
    """A Wav2CLIP-architecture encoder, random weights with BatchNorm statistics set by a few clips (as
    training leaves them; default statistics let activations drift layer by layer)."""
    import torch

    from mmretrieval.encoders.audio import AudioEncoder, calibration_waves
    from mmretrieval.encoders.wav2clip import Wav2CLIPTower
    from mmretrieval.space.spec import AudioSpec

    torch.manual_seed(0)
    tower = Wav2CLIPTower()
    with torch.no_grad():
        tower.train()(torch.from_numpy(calibration_waves(16000, 16000, n=8, seed=5)))
    spec = AudioSpec({"arch": "wav2clip", "sample_rate": 16000, "window_s": 1.0, "hop_s": 1.0, "embed_dim": 512})
    return AudioEncoder(tower.eval(), spec, 512, torch.device("cpu"))


def test_int8_audio_is_static_close_to_fp32_and_batch_independent(tmp_path):
    """Audio networks quantise statically (scales from synthetic calibration signals): a ResNet (Wav2CLIP's
    architecture) keeps cosine >= 0.999 on clips it was not calibrated on, whole batches run at once and a
    clip's vector does not depend on its batch mates."""
    import onnx

    from mmretrieval.encoders.audio import calibration_waves

    enc = _wav2clip_encoder()
    clips = list(calibration_waves(16000, 16000, n=8, seed=9)) + [calibration_waves(16000, 12000, n=1, seed=3)[0]]
    ref = enc.encode(clips)
    enc.runner = onnx_runtime.load_tower(lambda: audio_export(enc), "audio", "int8", "w2c", tmp_path)
    assert not enc.runner.per_item
    got = enc.encode(clips)
    # the check behind the export: >= 0.999 on its held-out probes; other clips measured 0.9985-0.9999
    assert json.loads(next((tmp_path / "onnx" / "w2c").rglob("audio.int8.json")).read_text())["min_cosine"] >= 0.999
    assert np.einsum("ij,ij->i", got, ref).min() >= 0.998
    assert np.abs(enc.encode(clips[:1]) - got[:1]).max() < 1e-6  # alone or in a batch: the same vector
    ops = {n.op_type for n in onnx.load(str(enc.runner.path), load_external_data=False).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops and "ConvInteger" not in ops


def test_int8_audio_is_refused_where_it_moves_vectors(tmp_path, monkeypatch):
    """The shipped tiny audio tower loses too much in int8 (min cosine ~0.996 on held-out signals, 0.985 on its
    held-out clips): asked for, it is refused with the measured cosine and the refusal is remembered (no
    second export). Neither auto nor a bare int8 puts audio in int8."""
    from mmretrieval.errors import UnsupportedPrecisionError
    from mmretrieval.space import backend

    monkeypatch.setenv("MMR_CACHE", str(tmp_path / "cache"))
    spec = mmr.resolve_model_arg("tiny")
    with pytest.raises(UnsupportedPrecisionError, match=r"audio tower's vectors close to fp32 \(min cosine 0\.9"):
        Space(spec, precision="audio=int8")
    (meta,) = (tmp_path / "cache" / "onnx").rglob("audio.int8.json")
    assert "refused" in json.loads(meta.read_text())
    calls = []
    monkeypatch.setattr(onnx_runtime, "quantize_static", lambda *a: calls.append(a))
    with pytest.raises(UnsupportedPrecisionError, match="min cosine"):
        Space(spec, precision="audio=int8")
    assert not calls  # the refusal was remembered
    assert Space(spec, precision="int8").precision["audio"] == "fp32"  # int8 alone: text and image
    from mmretrieval.encoders import audio_tower

    monkeypatch.setattr(audio_tower, "splits", lambda tower: False)  # an arch without features/embed
    with pytest.raises(UnsupportedPrecisionError, match="'conv' tower does not split its front end"):
        Space(spec, precision="audio=int8")
    monkeypatch.setattr(backend, "int8_faster", lambda native: True)
    assert Space(spec, precision="auto", backend="torch").precision["audio"] in ("bf16", "fp32")
