"""Pretrained image backbones: weights from a local file (no network: an untrained backbone's weights saved here)
train in two phases, export with parity, quantize and serve; unreachable weights stop with one line naming the file
to place and where."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from serving.client import KilnClient, KilnServer
from serving.store import ModelStore
from tests.conftest import make_image_folder
from training.config import ConfigError, ImageModelConfig, TrainConfig

pytestmark = [pytest.mark.slow]

BACKBONE_CONFIG = """
image_model: {{architecture: mobilenet_v3_small, pretrained: {weights}, height: 32, width: 32, dense_units: 16,
              fine_tune_epochs: 2, fine_tune_fraction: 0.5}}
train: {{epochs: 3, batch_size: 16, early_stopping_patience: 3}}
augment: {{enabled: false}}
compress: {{latency_runs: 5, calibration_samples: 32, prune_epochs: 1, qat_epochs: 1}}
"""


def save_untrained_backbone(path: Path) -> Path:
    from training.tf_env import keras

    keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), include_top=False, weights=None, pooling="avg", include_preprocessing=True
    ).save_weights(str(path))
    return path


def test_unreachable_imagenet_weights_name_the_file_and_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.preprocess import ImageSpec
    from training.models.image import build_image_model

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("KILN_OFFLINE", "1")
    spec = ImageSpec(labels=("a", "b"), height=32, width=32, channels=3)
    cfg = ImageModelConfig(architecture="mobilenet_v3_small")
    with pytest.raises(ConfigError) as caught:
        build_image_model(spec, cfg, TrainConfig())
    message = str(caught.value)
    assert f"place weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5 in {tmp_path / 'keras' / 'models'}/" in message
    assert "\n" not in message
    missing = cfg.model_copy(update={"pretrained": str(tmp_path / "absent.h5")})
    with pytest.raises(ConfigError, match=f"no weights file at {tmp_path / 'absent.h5'}"):
        build_image_model(spec, missing, TrainConfig())


def test_the_backbone_starts_frozen_from_the_file_and_is_flat(tmp_path: Path) -> None:
    from serving.preprocess import ImageSpec
    from training.models.image import BACKBONE_LAYERS, build_image_model
    from training.tf_env import keras

    weights = save_untrained_backbone(tmp_path / "backbone.weights.h5")
    spec = ImageSpec(labels=("a", "b"), height=32, width=32, channels=3)
    cfg = ImageModelConfig(architecture="mobilenet_v3_small", pretrained=str(weights))
    model = build_image_model(spec, cfg, TrainConfig())
    names = getattr(model, BACKBONE_LAYERS)
    assert names and not any(isinstance(layer, keras.Model) for layer in model.layers)  # tfmot needs it flat
    assert not any(model.get_layer(name).trainable for name in names)
    reference = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), include_top=False, weights=None, pooling="avg", include_preprocessing=True
    )
    reference.load_weights(str(weights))
    first = next(layer for layer in reference.layers if layer.weights)
    np.testing.assert_array_equal(model.get_layer(first.name).get_weights()[0], first.get_weights()[0])


@pytest.mark.e2e
def test_a_backbone_from_a_local_file_trains_exports_quantizes_and_serves(tmp_path: Path) -> None:
    data = make_image_folder(tmp_path / "images", per_class=24)
    weights = save_untrained_backbone(tmp_path / "backbone.weights.h5")
    config = tmp_path / "backbone.yaml"
    config.write_text(BACKBONE_CONFIG.format(weights=weights))
    store, out = tmp_path / "store", tmp_path / "run"
    env = {**os.environ, "KILN_OFFLINE": "1", "KERAS_HOME": str(tmp_path / "keras")}
    cmd = [sys.executable, "-m", "flows.cli", "run", "--task", "image", "--data", str(data), "--store", str(store)]
    result = subprocess.run(
        [*cmd, "--out", str(out), "--config", str(config)], capture_output=True, text=True, timeout=1200, env=env
    )
    assert result.returncode == 0, result.stderr[-5000:]
    report = json.loads((out / "report.json").read_text())
    epochs = report["training"]["epochs_run"]
    assert epochs > 3 or report["training"]["stopped_early"]  # the second phase's epochs follow the first's
    assert {"fp32", "int8"} <= set(report["variants"])
    parity = report["parity"]
    assert parity["fp32"]["max_abs_diff"] <= parity["fp32"]["tolerance"]  # the exported graph is the Keras model
    measured = {name for name, p in parity.items() if "skipped" not in p}
    assert {"fp32", "int8", "pruned", "pruned_int8", "qat"} <= measured  # pruning and QAT see a flat graph
    assert all(p["skipped"] for p in parity.values() if "skipped" in p)  # a skipped variant says why
    model = ModelStore(store).production_version("image")
    assert model is not None and model.spec()["channels"] == 3 and model.spec()["height"] == 32
    with KilnServer(store) as server:
        answer = KilnClient(server.url).classify_image(next(data.rglob("*.png")))
    assert answer["label"] in model.spec()["labels"]
