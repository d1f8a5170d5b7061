"""Hardware paths that run here too: MirroredStrategy over two logical CPU devices, mixed precision
(returned in float32 for export), XLA compilation, and a multi-worker non-chief role (trains, registers nothing)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY_CONFIG, make_texts, write_csv

pytestmark = pytest.mark.slow


def _train(tmp_path: Path, train_overrides: dict, prelude: str = "") -> str:
    """Train a tiny text model in a fresh process (device setup must precede TensorFlow's first use)."""
    data = write_csv(tmp_path / "t.csv", make_texts(30))
    base = yaml.safe_load(TINY_CONFIG)
    base["train"] |= train_overrides | {"epochs": 8}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(base))
    script = (
        "from training.tf_env import tf\n"
        + prelude
        + textwrap.dedent(f"""
        from pathlib import Path
        from training.data.clean import clean_texts
        from training.config import load_config
        from training.data.split import split_dataset
        from training.fit.train import train_model
        cfg = load_config(Path({str(tmp_path / "c.yaml")!r}))
        ds = clean_texts(Path({str(data)!r}))
        train, val, test = split_dataset(ds, cfg.data)
        trained = train_model(train, val, cfg)
        losses = trained.history["loss"]
        assert losses[-1] < losses[0], losses
        print("DEVICE", trained.device)
        print("DTYPE", trained.model.layers[-1].dtype_policy.name, trained.model.layers[1].dtype_policy.name)
        from training.data.features import to_arrays
        x, y = to_arrays(val, trained.spec)
        accuracy = float((trained.model.predict(x, verbose=0).argmax(1) == y).mean())
        print("ACCURACY", accuracy, max(trained.history["val_accuracy"]))
        assert accuracy > 0.6 and accuracy >= max(trained.history["val_accuracy"]) - 0.15, accuracy
    """)
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_mirrored_strategy_trains_on_two_logical_cpu_devices(tmp_path: Path) -> None:
    prelude = (
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)"
    )
    out = _train(tmp_path, {"distribute": "mirrored"}, prelude)
    assert "MirroredStrategy over 2 device(s)" in out


def test_mixed_precision_trains_and_returns_a_float32_model(tmp_path: Path) -> None:
    out = _train(tmp_path, {"mixed_precision": "on", "jit_compile": True})
    assert "mixed_float16" in out and "XLA" in out
    assert "DTYPE float32 float32" in out  # rebuilt in float32 for export and serving


# Addresses nothing listens on: with train.distribute "none" no collective starts, so nothing dials them.
CLUSTER = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}


def test_is_chief_reads_the_role_from_tf_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from training.tf_env import is_chief

    for config, chief in (
        (None, True),
        ({"cluster": CLUSTER, "task": {"type": "worker", "index": 0}}, True),
        ({"cluster": CLUSTER, "task": {"type": "worker", "index": 1}}, False),
        ({"cluster": {"chief": ["c:1"], **CLUSTER}, "task": {"type": "worker", "index": 0}}, False),
        ({"cluster": {"chief": ["c:1"], **CLUSTER}, "task": {"type": "chief", "index": 0}}, True),
    ):
        monkeypatch.setenv("TF_CONFIG", json.dumps(config) if config else "")
        assert is_chief() is chief, config


def test_a_worker_trains_but_registers_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: None
) -> None:
    """The retrain flow run as worker 1 of a two-worker cluster: it trains, then stops before compressing,
    gating and registering; only the chief writes to the model store."""
    from flows.retrain import retrain
    from serving.store import ModelStore

    data = write_csv(tmp_path / "t.csv", make_texts(30))
    base = yaml.safe_load(TINY_CONFIG)
    base["train"] |= {"epochs": 2, "distribute": "none"}  # no MultiWorkerMirroredStrategy: nothing to wait for
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(base))
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": CLUSTER, "task": {"type": "worker", "index": 1}}))
    store, out = tmp_path / "store", tmp_path / "run"

    report = retrain(task="text", data=str(data), out=str(out), store=str(store), config=str(tmp_path / "c.yaml"))

    assert report.get("role") == "worker", f"the worker went on to compress and register: {report.get('model')}"
    assert report["task"] == "text"
    assert set(report) == {"task", "role", "training"}  # no model, gate, variants: nothing was registered
    assert 1 <= report["training"]["epochs_run"] <= 2 and "one device" in report["training"]["device"]
    models = ModelStore(store)
    assert models.versions("text") == [] and models.production("text") is None
    assert models.production_version("text") is None
    assert not (out / "artifacts").exists() and not (out / "report.json").exists()  # nor compressed or reported


def test_predicting_with_many_models_prints_no_retracing_notice() -> None:
    """Each model's first predict traces its own function; TensorFlow counts those traces across models."""
    import logging

    import numpy as np

    from training.tf_env import keras, tf

    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    tf.get_logger().addHandler(handler)
    try:
        models = [keras.Sequential([keras.layers.Input((3,)), keras.layers.Dense(2)]) for _ in range(6)]
        for rows in range(5, 11):
            for model in models:
                model.predict(np.zeros((rows, 3), dtype="float32"), verbose=0)
        tf.get_logger().warning("another TensorFlow warning")
    finally:
        tf.get_logger().removeHandler(handler)
    assert seen == ["another TensorFlow warning"]
