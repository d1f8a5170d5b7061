"""Train tiny real models, export to ONNX, quantize, and check parity and the served-variant rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_CONFIG, make_image_folder, make_texts, write_csv


def _train_and_compress(task: str, data: Path, tmp: Path):
    from compression.compress import compress_model
    from training.clean import load_dataset
    from training.config import load_config
    from training.split import split_dataset
    from training.train import train_model

    cfg_path = tmp / "tiny.yaml"
    cfg_path.write_text(TINY_CONFIG)
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
    return _train_and_compress("image", make_image_folder(tmp / "images", per_class=40), tmp)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("text-run")
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
    # every variant was measured on validation; only the served one on test, once
    assert {v["split"] for v in compressed.variants.values()} == {"validation"}
    assert compressed.test_metrics["examples"] > 0 and compressed.test_metrics["accuracy"] >= 0.7
    assert compressed.served_stats()["accuracy"] == compressed.test_metrics["accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize("run,method", [("image_run", "static_qdq"), ("text_run", "dynamic")])
def test_int8_variant_is_smaller_and_agrees(run: str, method: str, request: pytest.FixtureRequest) -> None:
    _, compressed, _ = request.getfixturevalue(run)
    fp32, int8 = compressed.variants["fp32"], compressed.variants["int8"]
    assert int8["method"] == method
    assert int8["bytes"] < fp32["bytes"] and int8["gzip_bytes"] < fp32["gzip_bytes"]
    assert compressed.parity["int8"]["top1_agreement"] >= 0.9
    for v in (fp32, int8):
        assert (compressed.directory / v["file"]).is_file()
        assert v["latency_ms_p50"] > 0 and v["latency_ms_b32_p50"] > 0 and v["throughput_per_s"] > 0
        assert v["threads"] >= 1
    assert (compressed.directory / "keras" / "model.keras").is_file()  # kept for later compression runs
    # only this run's files: the directory becomes an immutable store version as it is
    names = sorted(p.name for p in (compressed.directory / "variants").iterdir())
    assert names == ["fp32.onnx", "int8.onnx", "pruned.onnx", "pruned_int8.onnx"]


@pytest.mark.slow
@pytest.mark.parametrize("run", ["image_run", "text_run"])
def test_pruned_variants_are_sparse_and_compress_better(run: str, request: pytest.FixtureRequest) -> None:
    _, compressed, cfg = request.getfixturevalue(run)
    v = compressed.variants
    assert v["pruned"]["method"] == "tfmot_magnitude" and v["pruned"]["pruned_layers"] >= 1
    assert v["pruned"]["sparsity"] >= cfg.compress.sparsity - 0.05  # the schedule reached its target
    assert v["pruned"]["gzip_bytes"] < v["fp32"]["gzip_bytes"] * 0.6  # zeros compress
    assert v["pruned_int8"]["gzip_bytes"] < v["int8"]["gzip_bytes"]
    assert v["pruned_int8"]["method"].startswith("tfmot_magnitude+")
    for name in ("pruned", "pruned_int8"):
        assert compressed.parity[name]["top1_agreement"] >= 0.8
        assert v[name]["accuracy"] >= 0.7  # chance is 1/3


@pytest.mark.slow
def test_pruned_variants_can_be_turned_off(tmp_path: Path) -> None:
    from compression.compress import compress_model
    from training.clean import load_dataset
    from training.config import load_config
    from training.split import split_dataset
    from training.train import train_model

    cfg = load_config(None, {"train": {"epochs": 1}, "compress": {"variants": ["pruned_int8"], "latency_runs": 2}})
    data = make_image_folder(tmp_path / "images", per_class=10)
    train, val, test = split_dataset(load_dataset("image", data), cfg.data)
    compressed = compress_model(train_model(train, val, cfg), train, val, test, cfg, tmp_path / "artifacts")
    assert set(compressed.variants) == {"fp32", "int8", "pruned_int8"}  # pruned was made, used, not kept
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


def test_parity_failure_stops_registration() -> None:
    from compression.compress import ParityError, check_parity

    a = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert check_parity(a, a + 1e-6, 1e-4)["max_abs_diff"] < 1e-4
    with pytest.raises(ParityError, match="differ from Keras"):
        check_parity(a, a[:, ::-1], 1e-4)
