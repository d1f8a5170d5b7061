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
    return trained, compress_model(trained, test, cfg.compress, tmp / "artifacts"), cfg


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
        assert v["latency_ms_p50"] > 0
    assert (compressed.directory / "keras" / "model.keras").is_file()  # kept for later compression runs
    # only this run's files: the directory becomes an immutable store version as it is
    assert sorted(p.name for p in (compressed.directory / "variants").iterdir()) == ["fp32.onnx", "int8.onnx"]


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


def test_served_variant_is_smallest_within_budget() -> None:
    from compression.compress import select_served

    v = {"fp32": {"accuracy": 0.95, "bytes": 100}, "int8": {"accuracy": 0.945, "bytes": 30}}
    assert select_served(v, 0.01) == "int8"
    v["int8"]["accuracy"] = 0.93
    assert select_served(v, 0.01) == "fp32"


def test_parity_failure_stops_registration() -> None:
    from compression.compress import ParityError, check_parity

    a = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert check_parity(a, a + 1e-6, 1e-4)["max_abs_diff"] < 1e-4
    with pytest.raises(ParityError, match="differ from Keras"):
        check_parity(a, a[:, ::-1], 1e-4)
