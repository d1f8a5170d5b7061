"""Train tiny real models, export to ONNX, quantize, and check parity and the served-variant rule."""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from tests.conftest import TINY_CONFIG, make_image_folder, make_texts, write_csv


def _train_and_compress(task: str, data: Path, tmp: Path, config: str = TINY_CONFIG):
    from compression.compress import compress_model
    from training.config import load_config
    from training.data.clean import load_dataset
    from training.data.split import split_dataset
    from training.fit.train import train_model

    cfg_path = tmp / "tiny.yaml"
    cfg_path.write_text(config)
    cfg = load_config(cfg_path)
    stale = tmp / "artifacts" / "variants" / "left-from-an-earlier-run.onnx"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    train, val, test = split_dataset(load_dataset(task, data), cfg.data)
    trained = train_model(train, val, cfg)
    before = [w.copy() for w in trained.model.get_weights()]
    compressed = compress_model(trained, train, val, test, cfg, tmp / "artifacts")
    # pruning fine-tunes a copy: the trained (fp32 baseline) model keeps every weight it had
    assert all(np.array_equal(a, b) for a, b in zip(before, trained.model.get_weights(), strict=True))
    return trained, compressed, cfg


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("image-run")
    # a head wide enough that the weights outweigh the graph's fixed bytes (the per-image standardisation's nodes
    # among them), so the variants' size ratios measure how each stores its weights
    wider = TINY_CONFIG.replace(
        "dense_units: 16, dropout: 0.1, kernel: false", "dense_units: 64, dropout: 0.1, kernel: false"
    )
    assert wider != TINY_CONFIG
    return _train_and_compress("image", make_image_folder(tmp / "images", per_class=40), tmp, wider)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory):
    """A wide & deep text model that keeps its network (on these easy texts the linear half alone is perfect, so
    the default rule would ship it alone: see linear_text_run)."""
    tmp = tmp_path_factory.mktemp("text-run")
    keep = TINY_CONFIG.replace("dropout: 0.1}\ntrain", "dropout: 0.1, require_network_gain: false}\ntrain")
    assert keep != TINY_CONFIG
    return _train_and_compress("text", write_csv(tmp / "t.csv", make_texts(60)), tmp, keep)


@pytest.fixture(scope="module")
def linear_text_run(tmp_path_factory: pytest.TempPathFactory):
    """The default rule on texts the linear half alone classifies perfectly: the network cannot beat it on
    validation, and the linear model ships alone."""
    tmp = tmp_path_factory.mktemp("linear-text-run")
    return _train_and_compress("text", write_csv(tmp / "t.csv", make_texts(60)), tmp)


@pytest.mark.slow
@pytest.mark.parametrize("run", ["image_run", "text_run"])
def test_training_learns_and_onnx_matches_keras(run: str, request: pytest.FixtureRequest) -> None:
    trained, compressed, cfg = request.getfixturevalue(run)
    losses = trained.history["loss"]
    assert losses[-1] < losses[0] * 0.7  # loss went down
    fp32 = compressed.variants["fp32"]
    assert fp32["accuracy"] >= 0.8  # chance is 1/3
    assert compressed.parity["fp32"]["max_abs_diff"] <= cfg.compress.parity_tolerance
    assert compressed.parity["fp32"]["top1_agreement"] == 1.0
    # every variant was measured on validation, which chose the served one; then each once on test
    assert {v["split"] for v in compressed.variants.values()} == {"validation"}
    assert compressed.test_metrics["examples"] > 0 and compressed.test_metrics["accuracy"] >= 0.7
    assert compressed.served_stats()["accuracy"] == compressed.test_metrics["accuracy"]
    tested = {name: v["test"] for name, v in compressed.variants.items()}
    assert {t["examples"] for t in tested.values()} == {compressed.test_metrics["examples"]}
    assert tested["fp32"]["top1_agreement"] == 1.0 and all(0 <= t["ece"] <= 1 for t in tested.values())
    served = tested[compressed.served]  # the report's test score is the served variant's block
    keys = ("accuracy", "macro_f1", "ece", "ece_uncalibrated")
    assert {k: served[k] for k in keys} == {k: compressed.test_metrics[k] for k in keys}
    assert served["accuracy"] == pytest.approx(np.trace(compressed.confusion) / compressed.confusion.sum(), abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("run", ["image_run", "text_run"])
def test_int8_variant_is_smaller_and_agrees(run: str, request: pytest.FixtureRequest) -> None:
    _, compressed, _ = request.getfixturevalue(run)
    fp32, int8 = compressed.variants["fp32"], compressed.variants["int8"]
    if run == "image_run":
        assert int8["method"] == "static_qdq_minmax"
    else:  # texts: three ways measured, the most faithful to fp32 at equal accuracy kept
        candidates = int8["int8_candidates"]
        assert set(candidates) == {"static_qdq_minmax", "dynamic", "dynamic_embeddings"}
        kept = candidates[int8["method"]]
        assert kept["accuracy"] >= max(c["accuracy"] for c in candidates.values()) - 0.002
        assert kept["top1_agreement"] == compressed.parity["int8"]["top1_agreement"]
        assert all(0 <= c["mean_abs_diff"] <= 1 and 0 <= c["top1_agreement"] <= 1 for c in candidates.values())
        assert "mean_abs_diff" not in int8  # the candidates' fidelity is the choice's record, not a variant stat
    assert int8["bytes"] < fp32["bytes"] and int8["gzip_bytes"] < fp32["gzip_bytes"]
    assert compressed.parity["int8"]["top1_agreement"] >= 0.9
    for v in (fp32, int8):
        assert (compressed.directory / v["file"]).is_file()
        assert v["latency_ms_p50"] > 0 and v["latency_ms_b32_p50"] > 0 and v["throughput_per_s"] > 0
        assert v["threads"] >= 1
    kept = compressed.directory / "keras" / "model.keras"  # kept for later compression runs
    with zipfile.ZipFile(kept) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5"))) as weights:
        assert "layers" in weights and "optimizer" not in weights  # the weights, not Adam's slots (3x the bytes)
    # only this run's files: the directory becomes an immutable store version as it is
    names = sorted(p.name for p in (compressed.directory / "variants").iterdir())
    assert names == sorted(f"{name}.onnx" for name in compressed.variants)
    assert all(v["graph_optimization"] == "basic" for v in compressed.variants.values())


@pytest.mark.slow
def test_qat_variants_train_quantized_and_store_int8_weights(image_run) -> None:
    import onnx
    from onnx import numpy_helper

    _, compressed, cfg = image_run
    v = compressed.variants
    for name in ("qat", "pruned_qat"):
        assert v[name]["method"].startswith("tfmot_qat") and v[name]["int8_weights"] >= 2
        # INT8 weights (about the size of post-training INT8), not fake-quantized floats
        assert v[name]["bytes"] < min(v["fp32"]["bytes"] * 0.7, v["int8"]["bytes"] * 1.3)
        assert compressed.parity[name]["top1_agreement"] >= 0.8 and v[name]["accuracy"] >= 0.7
        # the ONNX file reproduces the fake-quantized Keras model it was exported from
        assert compressed.parity[name]["keras_top1_agreement"] >= 0.9
        onnx.checker.check_model(str(compressed.directory / v[name]["file"]))
    # activation ranges started from calibration, not tfmot's [-6, 6]: a ReLU output quantizes from zero
    # (which also lets ONNX Runtime fuse the ReLU into its integer kernels)
    qat = onnx.load(str(compressed.directory / v["qat"]["file"]))
    inits = {i.name: numpy_helper.to_array(i) for i in qat.graph.initializer}
    producer = {out: node for node in qat.graph.node for out in node.output}
    quantizers = [n for n in qat.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in producer]
    after_relu = [n for n in quantizers if producer[n.input[0]].op_type == "Relu"]
    assert after_relu and all(int(inits[n.input[2]]) == 0 for n in after_relu)
    model = onnx.load(str(compressed.directory / v["pruned_qat"]["file"]))
    weights = [numpy_helper.to_array(i) for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    weights = [w for w in weights if w.ndim >= 2]
    zeros = sum(int(np.sum(w == 0)) for w in weights) / sum(w.size for w in weights)
    assert zeros >= cfg.compress.sparsity - 0.1  # prune-preserving QAT kept the zeros
    assert v["pruned_qat"]["gzip_bytes"] < v["qat"]["gzip_bytes"]


@pytest.mark.slow
def test_inapplicable_variants_are_skipped_with_the_reason(text_run) -> None:
    _, compressed, _ = text_run
    for name in ("qat", "pruned_qat"):  # tfmot cannot quantize Embedding or Conv1D layers
        assert name not in compressed.variants
        assert "Embedding" in compressed.parity[name]["skipped"]
        assert not (compressed.directory / "variants" / f"{name}.onnx").exists()


@pytest.mark.slow
@pytest.mark.parametrize("run", ["image_run", "text_run"])
def test_fp16_variant_is_half_size_and_kept_for_gpu(run: str, request: pytest.FixtureRequest) -> None:
    import onnx

    _, compressed, _ = request.getfixturevalue(run)
    fp16 = compressed.variants["fp16"]
    assert fp16["device"] == "cuda" and compressed.served != "fp16"  # CPU serving never picks it
    assert fp16["bytes"] < compressed.variants["fp32"]["bytes"] * 0.7
    model = onnx.load(str(compressed.directory / fp16["file"]))
    kernels = [i for i in model.graph.initializer if len(i.dims) >= 2]
    assert kernels and all(i.data_type == onnx.TensorProto.FLOAT16 for i in kernels)
    assert model.graph.input[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT16  # clients send float32
    assert compressed.parity["fp16"]["top1_agreement"] >= 0.95


@pytest.mark.slow
@pytest.mark.parametrize("run", ["image_run", "text_run"])
def test_pruned_variants_are_sparse_and_compress_better(run: str, request: pytest.FixtureRequest) -> None:
    _, compressed, cfg = request.getfixturevalue(run)
    v = compressed.variants
    assert v["pruned"]["method"] == "tfmot_magnitude" and v["pruned"]["pruned_layers"] >= 1
    assert v["pruned"]["sparsity"] >= cfg.compress.sparsity - 0.05  # the schedule reached its target
    # zeros compress (the text model's token table, which tfmot cannot prune, ships its unreached rows as zeros
    # in fp32 already, so there the pruned kernels are a smaller share of the file)
    assert v["pruned"]["gzip_bytes"] < v["fp32"]["gzip_bytes"] * (0.6 if run == "image_run" else 0.85)
    assert v["pruned_int8"]["gzip_bytes"] < v["int8"]["gzip_bytes"]
    assert v["pruned_int8"]["method"].startswith("tfmot_magnitude+")
    for name in ("pruned", "pruned_int8"):
        assert compressed.parity[name]["top1_agreement"] >= 0.8
        assert v[name]["accuracy"] >= 0.7  # chance is 1/3


@pytest.mark.slow
def test_pruned_variants_can_be_turned_off(tmp_path: Path) -> None:
    from compression.compress import compress_model
    from training.config import load_config
    from training.data.clean import load_dataset
    from training.data.split import split_dataset
    from training.fit.train import train_model

    # The network alone (after one epoch the kernel model would ship alone, and it has nothing to prune).
    overrides = {"train": {"epochs": 1}, "compress": {"variants": ["pruned_int8"], "latency_runs": 2}}
    cfg = load_config(None, {**overrides, "image_model": {"kernel": False}})
    data = make_image_folder(tmp_path / "images", per_class=10)
    train, val, test = split_dataset(load_dataset("image", data), cfg.data)
    compressed = compress_model(train_model(train, val, cfg), train, val, test, cfg, tmp_path / "artifacts")
    assert set(compressed.variants) == {"fp32", "pruned_int8"}  # pruned was made, used, not kept
    assert not (tmp_path / "artifacts" / "variants" / "pruned.onnx").exists()


@pytest.mark.slow
def test_static_qdq_graph_holds_int8_weights(image_run) -> None:
    import onnx

    _, compressed, _ = image_run
    model = onnx.load(str(compressed.directory / compressed.variants["int8"]["file"]))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert any(init.data_type == onnx.TensorProto.INT8 for init in model.graph.initializer)
    # the probabilities leave the graph from a float Softmax, not a quantize/dequantize pair
    producer = {out: node for node in model.graph.node for out in node.output}
    assert producer[model.graph.output[0].name].op_type == "Softmax"


@pytest.mark.slow
def test_int8_embeddings_alone_store_the_tables_as_int8_and_compute_in_float(
    text_run, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import onnx

    from compression.quantize import quantize_embeddings_int8
    from serving.runtime import Classifier, make_session

    trained, compressed, _ = text_run
    fp32 = compressed.directory / compressed.variants["fp32"]["file"]
    with caplog.at_level(logging.WARNING):
        out = quantize_embeddings_int8(fp32, tmp_path / "embeddings.onnx")
    assert not [r for r in caplog.records if "pre-processing" in r.getMessage()]  # ORT's advice, moot here
    graph = onnx.load(str(out)).graph
    ops = {n.op_type for n in graph.node}
    assert "Gather" in ops and "DequantizeLinear" in ops
    assert not ops & {"MatMulInteger", "ConvInteger", "QLinearMatMul", "QLinearConv", "DynamicQuantizeLinear"}
    gathered = {n.input[0] for n in graph.node if n.op_type == "Gather"}
    tables = [i for i in graph.initializer if i.name in gathered and len(i.dims) == 2]
    # 8-bit tables (ORT stores Gather weights as UINT8 with a zero point)
    assert tables and all(i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) for i in tables)
    assert out.stat().st_size < fp32.stat().st_size / 2
    x = np.asarray(trained.calibration)
    probs = [Classifier(make_session(p.read_bytes(), device="cpu"), trained.spec).predict(x) for p in (fp32, out)]
    assert len(x) and np.mean(probs[0].argmax(1) == probs[1].argmax(1)) >= 0.95


@pytest.mark.slow
def test_calibration_batch_by_batch_gives_the_ranges_of_every_batch_at_once(image_run, tmp_path: Path) -> None:
    """Static INT8 calibrates one batch at a time (memory); the quantized graph equals ORT's own result when it
    is handed every calibration batch at once."""
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from compression.quantize import ArrayReader, _float_nodes, _input_name, quantize_static_qdq

    trained, compressed, _ = image_run
    fp32 = compressed.directory / compressed.variants["fp32"]["file"]
    calibration = np.concatenate([trained.calibration] * 3)[:40]  # 3 batches, the last one short
    reader = ArrayReader(_input_name(fp32), calibration)
    assert len(reader) == 3
    reader.set_range(1, 3)
    assert [len(next(iter(b.values()))) for b in iter(reader.get_next, None)] == [16, 8]

    ours = quantize_static_qdq(fp32, tmp_path / "ours.onnx", calibration, "minmax")
    prepared = tmp_path / "prepared.onnx"
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    batches = iter([{_input_name(fp32): calibration[i : i + 16]} for i in range(0, len(calibration), 16)])

    class AllAtOnce:
        def get_next(self) -> dict | None:
            return next(batches, None)

    quantize_static(
        str(prepared),
        str(tmp_path / "theirs.onnx"),
        AllAtOnce(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=_float_nodes(prepared),
    )

    def ranges(path: Path) -> dict[str, np.ndarray]:
        graph = onnx.load(str(path)).graph
        return {i.name: numpy_helper.to_array(i) for i in graph.initializer if "scale" in i.name or "zero" in i.name}

    mine, theirs = ranges(ours), ranges(tmp_path / "theirs.onnx")
    assert mine and set(mine) == set(theirs)
    assert all(np.array_equal(mine[name], theirs[name]) for name in mine)


def test_the_export_runs_tf2onnxs_own_passes_and_unfreezes_after_a_failure(tmp_path: Path) -> None:
    import gc

    from tf2onnx import optimizer

    from compression.export import _collecting_optimizers, to_onnx
    from serving.preprocess import ImageSpec

    assert list(_collecting_optimizers()) == list(optimizer._get_optimizers())  # same passes, same order
    with pytest.raises(Exception):  # noqa: B017 - whatever tf2onnx raises for a non-model
        to_onnx(object(), ImageSpec(labels=["a", "b"], height=8, width=8, channels=1), tmp_path / "x.onnx")
    assert gc.get_freeze_count() == 0


def test_qat_start_ranges_read_in_runs_equal_the_ranges_of_the_whole_sample() -> None:
    from compression.qat import _ranges
    from serving.runtime import OFFLINE_BATCH
    from training.tf_env import keras

    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(5, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="out")(hidden))
    sample = np.random.default_rng(3).normal(size=(2 * OFFLINE_BATCH + 7, 6)).astype(np.float32) * 4

    found = _ranges(model, sample)

    w1, b1 = model.get_layer("hidden").get_weights()
    w2, b2 = model.get_layer("out").get_weights()
    pre1 = sample @ w1 + b1
    out1 = np.maximum(pre1, 0)
    pre2 = out1 @ w2 + b2
    out2 = np.exp(pre2) / np.exp(pre2).sum(axis=1, keepdims=True)

    def spans(values: np.ndarray) -> tuple[float, float]:  # always containing 0, as tfmot needs
        return min(0.0, float(values.min())), max(0.0, float(values.max()))

    expected = {
        "hidden": {"output": spans(out1), "pre_activation": spans(pre1)},
        "out": {"output": spans(out2), "pre_activation": spans(pre2)},
    }
    assert found.keys() == expected.keys()
    for name, entry in expected.items():
        assert found[name].keys() == entry.keys()
        for key, (lo, hi) in entry.items():
            assert found[name][key] == pytest.approx((lo, hi), abs=1e-5)


def test_an_unknown_int8_method_is_refused(tmp_path: Path) -> None:
    from compression.compress import _Builder
    from training.config import RunConfig

    builder = _Builder.__new__(_Builder)  # the method reads only the run's config
    builder.cfg = RunConfig()
    with pytest.raises(ValueError, match="unknown INT8 method 'bogus'"):
        builder._quantize_by("bogus", tmp_path / "in.onnx", tmp_path / "out.onnx")


def _variant(accuracy: float, gzip_bytes: int, b1: float, b32: float) -> dict:
    return {
        "accuracy": accuracy,
        "bytes": gzip_bytes,
        "gzip_bytes": gzip_bytes,
        "latency_ms_p50": b1,
        "latency_ms_b32_p50": b32,
    }


def test_selection_objectives_within_the_accuracy_budget() -> None:
    from compression.compress import select_served

    v = {
        "fp32": _variant(0.95, 100, 1.0, 10.0),
        "int8": _variant(0.945, 30, 1.8, 25.0),  # smaller but slower (dynamic INT8 text models do this)
        "pruned": _variant(0.95, 40, 1.0, 10.0),
        "pruned_int8": _variant(0.93, 10, 0.5, 5.0),  # smallest and fastest, but 2 points worse
    }
    assert select_served(v, 0.01, "smallest") == "int8"
    assert select_served(v, 0.01, "balanced") == "pruned"  # int8 is slower than fp32
    assert select_served(v, 0.01, "fastest", latency_batch=32) in ("fp32", "pruned")
    assert select_served(v, 0.03, "fastest") == "pruned_int8"
    v["int8"]["accuracy"] = v["pruned"]["accuracy"] = 0.9
    assert select_served(v, 0.01, "balanced") == "fp32"  # fp32 always qualifies


def test_on_a_small_validation_split_one_item_is_the_least_drop_allowed() -> None:
    from compression.compress import select_served

    def variants(items: int) -> dict:
        fp32 = _variant(50 / items, 100, 1.0, 10.0) | {"examples": items}
        return {"fp32": fp32, "int8": _variant(49 / items, 30, 0.5, 5.0) | {"examples": items}}

    one_of_95 = {"int8": 94 / 95}  # one item changed: 1.05 points, the finest step 95 items can show
    assert select_served(variants(95), 0.01, "balanced", agreement=one_of_95) == "int8"
    assert select_served(variants(95), 0.01, "balanced", agreement={"int8": 93 / 95}) == "fp32"  # two disagree
    # on 500 items the budget stays 1 point: one item lost passes, six do not
    assert select_served(variants(500), 0.01, "balanced", agreement={"int8": 499 / 500}) == "int8"
    v = variants(500)
    v["int8"]["accuracy"] = 44 / 500
    assert select_served(v, 0.01, "balanced", agreement={"int8": 494 / 500}) == "fp32"


def test_selection_tolerates_timing_noise_and_skips_gpu_only_variants() -> None:
    from compression.compress import select_served

    v = {
        "fp32": _variant(0.95, 100, 0.040, 0.5),
        "int8": _variant(0.95, 30, 0.046, 0.4),  # 15% "slower" at batch 1, but by 6 microseconds
        "fp16": _variant(0.95, 50, 0.010, 0.1) | {"device": "cuda"},
    }
    assert select_served(v, 0.01, "balanced", slack=0.05) == "fp32"
    assert select_served(v, 0.01, "balanced", slack=0.05, floor_ms=0.01) == "int8"
    # batch 32 has its own floor: 0.3 ms slower per 32 items is within 0.5, not within 0.01
    v["int8"]["latency_ms_b32_p50"] = 0.8
    assert select_served(v, 0.01, "balanced", slack=0.05, floor_ms=0.01) == "fp32"
    assert select_served(v, 0.01, "balanced", slack=0.05, floor_ms=0.01, floor_b32_ms=0.5) == "int8"
    v["int8"]["latency_ms_b32_p50"] = 0.4
    assert select_served(v, 0.01, "fastest", latency_batch=32) == "int8"  # fp16 is not for CPU serving
    assert select_served(v, 0.01, "fastest", device="cuda") == "fp16"


def test_grid_weights_are_stored_as_int8_without_changing_outputs(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from compression.quantize import check_and_optimize, store_weights_int8

    rng = np.random.default_rng(0)
    on_grid = (rng.integers(-127, 128, size=(8, 4)) * 0.01).astype(np.float32)
    on_grid[0, 0] = 1.27  # the largest magnitude is the 127th step
    off_grid = rng.normal(size=(4, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
        [numpy_helper.from_array(on_grid, "w1"), numpy_helper.from_array(off_grid, "w2")],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    x = rng.normal(size=(5, 8)).astype(np.float32)
    exact = ort.SessionOptions()  # no fusions: ORT may run DequantizeLinear+MatMul as an integer kernel
    exact.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL

    def run() -> np.ndarray:
        return ort.InferenceSession(str(path), exact, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    before = run()
    assert store_weights_int8(path) == 1  # w2 is not on a grid and stays float
    check_and_optimize(path)
    model = onnx.load(str(path))
    int8 = [i.name for i in model.graph.initializer if i.data_type == TensorProto.INT8 and len(i.dims) == 2]
    assert int8 == ["w1_int8"]  # and the basic graph optimisations did not fold it back to float
    np.testing.assert_allclose(run(), before, rtol=1e-5, atol=1e-5)


def test_parity_failure_stops_registration() -> None:
    from compression.compress import ParityError, check_parity

    a = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert check_parity(a, a + 1e-6, 1e-4)["max_abs_diff"] < 1e-4
    with pytest.raises(ParityError, match="differ from Keras"):
        check_parity(a, a[:, ::-1], 1e-4)


@pytest.mark.slow
def test_the_wide_half_of_a_text_model_stays_dense(text_run, tmp_path: Path) -> None:
    from compression.prune import prune_model
    from training.data.clean import load_dataset

    trained, _, cfg = text_run
    train = load_dataset("text", write_csv(tmp_path / "t.csv", make_texts(20)))
    pruned = prune_model(trained, train, cfg)
    assert "wide_weights" not in pruned.layers and pruned.layers  # the deep half was pruned
    before = trained.model.get_layer("wide_weights").get_weights()[0]
    after = pruned.model.get_layer("wide_weights").get_weights()[0]
    assert int((after == 0).sum()) <= int((before == 0).sum()) + before.size // 100


NETWORK_OPS = {"Conv", "Gemm", "MaxPool", "GRU", "LSTM", "ReduceMax", "Relu"}


def weight_matmuls(graph) -> list[str]:
    """MatMul nodes that multiply by a stored matrix (a Dense layer's, possibly through its dequantization): a
    network. The linear bag's own MatMul multiplies two computed tensors (models.WeightedBag)."""
    stored = {t.name for t in graph.graph.initializer}
    stored |= {n.output[0] for n in graph.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in stored}
    return [n.name for n in graph.graph.node if n.op_type in ("MatMul", "MatMulInteger") and set(n.input) & stored]


@pytest.mark.slow
def test_a_linear_chosen_text_model_exports_no_network_and_compression_brings_none_back(linear_text_run) -> None:
    import onnx

    trained, compressed, _ = linear_text_run
    assert trained.wide is not None and trained.wide["network_kept"] is False
    assert trained.model.name == "text_linear"
    variants = compressed.directory / "variants"
    graphs = {path.stem: onnx.load(str(path)) for path in variants.glob("*.onnx")}
    assert "fp32" in graphs
    classes, spec = len(trained.spec.labels), trained.spec
    members = trained.model.get_layer("wide_idf").get_weights()[0].shape[1]
    linear_parameters = spec.input_vocabulary * members * (1 + classes) + classes
    for name, graph in graphs.items():
        ops = {node.op_type for node in graph.graph.node}
        assert not ops & NETWORK_OPS, (name, ops & NETWORK_OPS)
        assert not weight_matmuls(graph), (name, weight_matmuls(graph))
        weights = sum(int(np.prod(t.dims)) for t in graph.graph.initializer)
        # Beyond the linear weights only bookkeeping: shapes, and a quantized graph's scales and zero points (a
        # few per node); a network's smallest table (vocabulary x embedding) would add thousands.
        bookkeeping = 64 + 4 * len(graph.graph.node)
        assert weights <= linear_parameters + bookkeeping, (name, weights, linear_parameters, bookkeeping)
    # nothing to prune in a linear model: the pruned variants are skipped with the reason, never a revived network
    for name in ("pruned", "pruned_int8"):
        # not applicable, not a failure: the reason alone, not an error's type
        assert name not in graphs and compressed.parity[name]["skipped"].startswith("no layer to prune")


def test_the_int8_method_kept_is_the_most_faithful_one_that_is_not_slower_than_fp32() -> None:
    """Timing noise among methods that are all fast enough must not change which one ships."""
    from compression.compress import _pick_int8, fidelity
    from training.config import RunConfig

    reference = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    close, loose = reference + [[-0.01, 0.01]] * 3, reference + [[-0.05, 0.05], [0.1, -0.1], [-0.15, 0.15]]
    assert fidelity(reference, close) == {"top1_agreement": 1.0, "mean_abs_diff": 0.01}
    assert fidelity(reference, loose)["top1_agreement"] == pytest.approx(2 / 3, abs=1e-6)

    fp32 = _variant(1.0, 100, 1.0, 10.0)
    faithful = _variant(1.0, 30, 0.9, 9.0) | fidelity(reference, close)
    fastest = _variant(1.0, 25, 0.5, 4.0) | fidelity(reference, reference + [[-0.03, 0.03]] * 3)
    cfg = RunConfig()
    assert _pick_int8({"static": fastest, "embeddings": faithful}, fp32, cfg) == "embeddings"
    faithful["latency_ms_b32_p50"] = 8.0  # timing noise reordering the two changes nothing
    assert _pick_int8({"static": fastest, "embeddings": faithful}, fp32, cfg) == "embeddings"
    faithful["latency_ms_b32_p50"] = 20.0  # slower than fp32: balanced would never serve it
    assert _pick_int8({"static": fastest, "embeddings": faithful}, fp32, cfg) == "static"
    faithful["latency_ms_b32_p50"], faithful["accuracy"] = 9.0, 0.99  # less accurate than int8_equal_accuracy
    assert _pick_int8({"static": fastest, "embeddings": faithful}, fp32, cfg) == "static"
    slow = _variant(1.0, 30, 5.0, 50.0) | fidelity(reference, loose)
    assert _pick_int8({"dynamic": slow, "embeddings": slow | fidelity(reference, close)}, fp32, cfg) == "embeddings"


def test_a_variant_that_disagrees_with_fp32_is_not_served_even_at_equal_accuracy() -> None:
    """After the refit every variant scores ~1.0 on the validation items it learnt from: disagreement with fp32
    on those items is what still shows a variant compression damaged."""
    from compression.compress import select_served

    v = {
        "fp32": _variant(1.0, 100, 0.05, 0.5),
        "pruned": _variant(1.0, 40, 0.05, 0.5),
        "int8": _variant(1.0, 60, 0.05, 0.5),
    }
    assert select_served(v, 0.01, "smallest") == "pruned"
    assert select_served(v, 0.01, "smallest", agreement={"pruned": 0.97, "int8": 0.995}) == "int8"
    assert select_served(v, 0.01, "smallest", agreement={"pruned": 0.97, "int8": 0.98}) == "fp32"


@pytest.mark.slow
def test_fine_tuned_variants_are_not_served_once_the_model_learnt_from_validation(image_run, tmp_path: Path) -> None:
    """After the refit, validation cannot judge a fine-tuned copy: its agreement with fp32 on items both learnt
    from hides what pruning changed on new ones. They are still made, measured and reported, with the reason."""
    from compression.report import write_compression_report
    from training.config import RETRAINED_VARIANTS

    trained, compressed, _ = image_run
    assert trained.shipped["learnt_from"] == "training + validation"
    made = [name for name in RETRAINED_VARIANTS if name in compressed.variants]
    assert made, "the image run makes pruned and QAT variants"
    assert compressed.served not in RETRAINED_VARIANTS
    assert all("serve_retrained" in compressed.variants[name]["not_served"] for name in made)
    assert all("not_served" not in v for name, v in compressed.variants.items() if name not in RETRAINED_VARIANTS)
    text = write_compression_report(compressed.variants, compressed.served, compressed.parity, tmp_path).read_text()
    assert all(f"- `{name}` not served: fine-tuned" in text for name in made)


def test_fine_tuned_variants_compete_where_validation_is_unseen_or_the_user_asks() -> None:
    from types import SimpleNamespace

    from compression.compress import _unjudged, select_served
    from training.config import CompressConfig

    def variants() -> dict[str, dict]:
        return {
            "fp32": _variant(1.0, 100, 0.05, 0.5),
            "int8": _variant(1.0, 30, 0.05, 0.5),
            "pruned_int8": _variant(1.0, 10, 0.05, 0.5),
        }

    refit, selection_only = (
        SimpleNamespace(shipped={"learnt_from": "training + validation"}),
        SimpleNamespace(shipped={"learnt_from": "training"}),
    )
    for trained, cfg, served in (
        (refit, CompressConfig(), "int8"),
        (selection_only, CompressConfig(), "pruned_int8"),
        (refit, CompressConfig(serve_retrained=True), "pruned_int8"),
        (SimpleNamespace(shipped={}), CompressConfig(), "pruned_int8"),  # stored before the refit existed
    ):
        v = variants()
        excluded = _unjudged(v, trained, cfg)  # type: ignore[arg-type]
        assert select_served(v, 0.01, "smallest", excluded=excluded) == served
        assert ("not_served" in v["pruned_int8"]) == (served == "int8")
    assert select_served(variants(), 0.01, "smallest", excluded=("fp32", "int8", "pruned_int8")) == "fp32"


def _with_logits_output(path: Path) -> Any:
    """An ORT session of the ONNX file at ``path`` that also outputs the logits its calibration map reads."""
    import onnx
    import onnxruntime as ort

    from compression.export import MAP_PARTS

    model = onnx.load(str(path))
    nodes = {node.name: node for node in model.graph.node}
    first = next(nodes[part[0]] for part in MAP_PARTS if part[0] in nodes)
    model.graph.output.append(onnx.helper.make_value_info(first.input[0], onnx.TypeProto()))
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _tiny_model() -> tuple[Any, Any, Any]:
    """A 3-class model over 4x4 images whose softmax reads a ``logits`` layer, its spec and the logits model."""
    from serving.preprocess import ImageSpec
    from training.tf_env import keras

    spec = ImageSpec(labels=("a", "b", "c"), height=4, width=4, channels=1)
    inputs = keras.Input((4, 4, 1))
    logits = keras.layers.Dense(3, name="logits")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Activation("softmax", name="probabilities")(logits))
    return model, spec, keras.Model(inputs, logits)


def _expected(logits: np.ndarray, calibration: dict[str, Any]) -> np.ndarray:
    """The calibrated softmax written out: exp(z / T), or sigmoid(u) * exp(LEAK * u) for the sigmoid link."""
    from training.models.calibration import LEAK

    if calibration["link"] == "sigmoid":
        u = calibration["slope"] * logits.astype(np.float64) + calibration["shift"]
        weights = np.exp(LEAK * u) / (1.0 + np.exp(-u))
    else:
        weights = np.exp(logits.astype(np.float64) / calibration["temperature"])
    return weights / weights.sum(axis=1, keepdims=True)


MAPS = (
    {"link": "temperature", "temperature": 2.5},
    {"link": "sigmoid", "temperature": 1.0, "slope": 3.0, "shift": -0.4},
    {"link": "sigmoid", "temperature": 1.0, "slope": 40.0, "shift": 2.0},  # most classes past log_sigmoid's flat end
)


@pytest.mark.slow
@pytest.mark.parametrize("calibration", MAPS, ids=lambda c: c["link"])
def test_the_exported_graph_gives_the_calibrated_softmax_of_its_logits(
    calibration: dict[str, Any], tmp_path: Path
) -> None:
    from compression.export import to_onnx

    model, spec, logits_model = _tiny_model()
    x = np.random.default_rng(0).normal(size=(64, 4, 4, 1)).astype(np.float32)
    keras_logits = logits_model.predict(x, verbose=0)
    path = to_onnx(model, spec, tmp_path / "t.onnx", calibration=calibration)
    session = _with_logits_output(path)
    probs, graph_logits = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(graph_logits, keras_logits, atol=1e-5)
    np.testing.assert_allclose(probs, _expected(keras_logits, calibration), atol=1e-6)
    assert np.array_equal(probs.argmax(axis=1), keras_logits.argmax(axis=1))  # the map never moves a label
    import onnx

    added = [node.name for node in onnx.load(str(path)).graph.node if node.name.startswith("kiln_")]
    assert len(added) == (6 if calibration["link"] == "sigmoid" else 1)
    with pytest.raises(ValueError, match="positive"):
        to_onnx(model, spec, tmp_path / "bad.onnx", calibration={"link": "temperature", "temperature": 0.0})
    with pytest.raises(ValueError, match="unknown calibration link"):
        to_onnx(model, spec, tmp_path / "bad2.onnx", calibration={"link": "isotonic", "temperature": 1.0})
    with pytest.raises(ValueError, match="positive slope"):
        to_onnx(model, spec, tmp_path / "bad3.onnx", calibration={**MAPS[1], "slope": -1.0})


@pytest.mark.slow
@pytest.mark.parametrize("calibration", MAPS[:2], ids=lambda c: c["link"])
def test_every_kind_of_variant_file_keeps_the_map_and_without_calibration_takes_it_out(
    calibration: dict[str, Any], tmp_path: Path
) -> None:
    """As compress makes them: ORT's optimizer rewrites each file (it would drop a Mul by 1), static INT8
    quantizes around the map, FP16 casts around it; the map is served by each and taken out of each."""
    import onnx
    import onnxruntime as ort

    from compression.export import to_onnx, without_calibration
    from compression.quantize import check_and_optimize, quantize_static_qdq, to_fp16

    model, spec, logits_model = _tiny_model()
    x = np.random.default_rng(2).normal(size=(64, 4, 4, 1)).astype(np.float32)
    raw, expected = model.predict(x, verbose=0), _expected(logits_model.predict(x, verbose=0), calibration)
    assert np.abs(raw - expected).mean() > 0.05  # the map matters here

    def scores(data: bytes) -> np.ndarray:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        return np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0])

    fp32 = to_onnx(model, spec, tmp_path / "fp32.onnx", calibration=calibration)
    check_and_optimize(fp32)
    int8 = quantize_static_qdq(fp32, tmp_path / "int8.onnx", x[:32])
    fp16 = to_fp16(fp32, tmp_path / "fp16.onnx")
    for path, tolerance in ((fp32, 1e-5), (int8, 0.03), (fp16, 0.01)):
        check_and_optimize(path)
        data = path.read_bytes()
        assert np.abs(scores(data) - expected).mean() < tolerance, path.name
        taken_out = without_calibration(data)
        assert np.abs(scores(taken_out) - raw).mean() < tolerance, path.name
        nodes = onnx.load_from_string(taken_out).graph.node
        assert not [node.name for node in nodes if node.name in ("kiln_temperature", "kiln_link_out")]


@pytest.mark.slow
def test_the_scores_without_calibration_come_from_the_graph_even_where_a_small_temperature_saturates_them(
    tmp_path: Path,
) -> None:
    import onnxruntime as ort

    from compression.export import to_onnx, without_calibration
    from training.models.calibration import rescaled

    model, spec, _ = _tiny_model()
    x = np.random.default_rng(1).normal(size=(16, 4, 4, 1)).astype(np.float32)
    raw = model.predict(x, verbose=0)

    def scores(data: bytes) -> np.ndarray:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        return np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0])

    cold = {"link": "temperature", "temperature": 0.002}
    tempered = to_onnx(model, spec, tmp_path / "t.onnx", calibration=cold).read_bytes()
    served = scores(tempered)
    assert (served.max(axis=1) == 1.0).mean() > 0.5  # float32 saturates: their logits cannot be read back
    assert not np.allclose(rescaled(served, 1 / 0.002), raw, atol=1e-3)
    np.testing.assert_allclose(scores(without_calibration(tempered)), raw, atol=1e-6)
    linked = to_onnx(model, spec, tmp_path / "s.onnx", calibration=MAPS[1]).read_bytes()
    assert not np.allclose(scores(linked), raw, atol=1e-3)
    np.testing.assert_allclose(scores(without_calibration(linked)), raw, atol=1e-6)  # the link's nodes are gone
    plain = to_onnx(model, spec, tmp_path / "plain.onnx").read_bytes()
    assert without_calibration(plain) == plain  # no map: nothing to undo


@pytest.mark.slow
@pytest.mark.parametrize("run", ["image_run", "text_run"])
def test_every_variant_serves_the_runs_temperature_and_reports_its_calibration(
    run: str, request: pytest.FixtureRequest
) -> None:
    import onnx
    from onnx import numpy_helper

    from compression.export import without_calibration

    trained, compressed, _ = request.getfixturevalue(run)
    calibrated = trained.calibrated
    assert calibrated["fitted_on"].startswith("validation") and calibrated["temperature"] > 0
    assert calibrated["link"] in ("temperature", "sigmoid")
    expected = {"kiln_link_slope": calibrated.get("slope"), "kiln_inverse_temperature": 1 / calibrated["temperature"]}
    for name in ("fp32", "pruned"):  # the graphs exported from Keras models carry it
        graph = onnx.load(str(compressed.directory / compressed.variants[name]["file"])).graph
        scalars = {i.name: float(numpy_helper.to_array(i)) for i in graph.initializer if i.name.startswith("kiln_")}
        assert ("kiln_link_slope" in scalars) == (calibrated["link"] == "sigmoid")
        assert ("kiln_inverse_temperature" in scalars) == (calibrated["temperature"] != 1.0)
        for key, value in scalars.items():
            if key in expected:
                assert np.isclose(value, expected[key], rtol=1e-6)
    for stats in compressed.variants.values():  # each variant's map was taken out for the uncalibrated scores
        assert 0.0 <= stats["ece"] <= 1.0 and 0.0 <= stats["ece_uncalibrated"] <= 1.0
        data = (compressed.directory / stats["file"]).read_bytes()
        assert without_calibration(data) != data
    test = compressed.test_metrics
    assert test["temperature"] == trained.temperature and {"ece", "ece_uncalibrated"} <= set(test)
    assert test["link"] == calibrated["link"]
    assert sum(compressed.reliability["calibrated"]["count"]) == test["examples"]
    assert trained.summary()["calibration"] == calibrated
