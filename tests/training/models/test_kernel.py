"""The RBF kernel model beside the image network: its fit, its graph, and validation's choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serving.preprocess import ImageSpec
from training.config import ImageModelConfig, TrainConfig

SHAPE = (8, 8, 1)


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three classes: a bright row, a bright column or a bright diagonal at a random place, on noise."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 0.3, (n, *SHAPE)).astype(np.float32)
    y = np.arange(n) % 3
    for i, label in enumerate(y):
        k = rng.integers(1, 7)
        if label == 0:
            x[i, k, :, 0] = 1.0
        elif label == 1:
            x[i, :, k, 0] = 1.0
        else:
            x[i, np.arange(8), np.arange(8), 0] = 1.0
    return x, y


@pytest.fixture(scope="module")
def fitted():
    from training.models.kernel import fit_kernel

    x, y = _images(150, 0)
    vx, vy = _images(60, 1)
    return fit_kernel(x, y, vx, vy, 3, False, ImageModelConfig(kernel_landmarks=40), seed=0), vx, vy


def test_the_kernel_model_learns_on_training_items_only_and_keeps_its_best_c(fitted) -> None:
    from training.models.kernel import KERNEL_C_GRID

    fit, vx, vy = fitted
    assert len(fit.landmarks) == 40 and fit.landmarks.shape[1] == 64
    assert set(fit.tried) == {f"C={c:g}" for c in KERNEL_C_GRID} and fit.c in KERNEL_C_GRID
    assert fit.val_accuracy == max(fit.tried.values()) >= 0.9
    assert (np.argmax(fit.logits(vx), axis=1) == vy).mean() == pytest.approx(fit.val_accuracy, abs=1e-4)


def test_two_classes_give_one_column_of_logits_each() -> None:
    from training.models.kernel import fit_kernel

    x, y = _images(90, 2)
    vx, vy = _images(30, 3)
    keep, vkeep = y < 2, vy < 2
    fit = fit_kernel(x[keep], y[keep], vx[vkeep], vy[vkeep], 2, True, ImageModelConfig(), seed=0)
    assert fit.weights.shape == (len(fit.landmarks), 2) and len(fit.landmarks) == keep.sum()  # all: fewer than 1,000
    assert (np.argmax(fit.logits(vx[vkeep]), axis=1) == vy[vkeep]).mean() == pytest.approx(fit.val_accuracy)


def test_the_kernel_graph_computes_the_fit_and_holds_no_network(fitted, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    from compression.export import to_onnx
    from training.models.kernel import kernel_model

    fit, vx, _ = fitted
    model = kernel_model(SHAPE, fit)
    expected = fit.logits(vx)
    expected = np.exp(expected - expected.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict(vx, verbose=0), expected, atol=1e-5)
    spec = ImageSpec(labels=("a", "b", "c"), height=8, width=8, channels=1)
    path = to_onnx(model, spec, tmp_path / "kernel.onnx")
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert not ops & {"Conv", "MaxPool", "Relu"}  # nothing of a network
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: vx})
    np.testing.assert_allclose(onnx_out, expected, atol=1e-5)


def test_the_blend_adds_both_halves_scaled_logits(fitted) -> None:
    from training.models.calibration import as_logits
    from training.models.image import build_image_model
    from training.models.kernel import KernelChoice, blended_model

    fit, vx, _ = fitted
    network = build_image_model(
        ImageSpec(labels=("a", "b", "c"), height=8, width=8, channels=1),
        ImageModelConfig(filters=(4,), dense_units=8),
        TrainConfig(),
    )
    choice = KernelChoice("blend", fit.c, 0.4, 0.7, 1.3, 0.5, fit.val_accuracy, 0.9, len(fit.landmarks))
    model = blended_model(network, fit, choice)
    logits = 0.7 * as_logits(network.predict(vx, verbose=0)) + 1.3 * fit.logits(vx)
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(model.predict(vx, verbose=0), expected / expected.sum(axis=1, keepdims=True), atol=1e-5)
    assert network.get_layer("probabilities").get_weights()[0] is not None  # the trained network is not changed


def test_validation_ships_the_kernel_model_alone_when_the_network_knows_nothing(fitted) -> None:
    from training.tf_env import keras

    fit, vx, vy = fitted
    inputs = keras.Input(SHAPE, name="image")
    flat = keras.layers.Flatten()(inputs)
    useless = keras.layers.Dense(3, activation="softmax", kernel_initializer="zeros", name="probabilities")(flat)
    network = keras.Model(inputs, useless)

    from training.models.kernel import choose

    shipped, choice = choose(network, fit, vx, vy)
    assert choice.shipped == "kernel" and choice.network_val_accuracy < 0.5 < choice.kernel_val_accuracy
    assert shipped.name == "image_kernel"
    summary = choice.summary()
    assert summary["shipped"] == "kernel" and set(summary["candidates"]) == set(fit.tried)


def test_the_kernel_is_tried_only_on_small_images_from_scratch() -> None:
    from training.models.kernel import kernel_applies

    small = ImageSpec(labels=("a", "b"), height=28, width=28, channels=1)
    colour = ImageSpec(labels=("a", "b"), height=32, width=32, channels=3)
    assert kernel_applies(small, ImageModelConfig(), 6000)
    assert not kernel_applies(colour, ImageModelConfig(), 6000)  # 3,072 values per image
    assert not kernel_applies(small, ImageModelConfig(), 50_000)
    assert not kernel_applies(small, ImageModelConfig(kernel=False), 6000)
    backbone = ImageModelConfig(architecture="mobilenet_v3_small", pretrained="none", kernel_max_values=4096)
    assert not kernel_applies(ImageSpec(labels=("a", "b"), height=32, width=32, channels=3), backbone, 600)


def test_ties_on_validation_accuracy_go_to_the_blend_then_to_the_lower_calibrated_log_loss() -> None:
    from training.models.kernel import _shipped

    assert _shipped(0.99, 0.98, 0.99, 0.5, losses=(0.05, 0.09)) == "blend"  # as good as the best half
    assert _shipped(0.99, 0.98, 0.985, 0.5, losses=(0.05, 0.09)) == "network"  # worse than the network
    assert _shipped(0.98, 0.98, 0.98, 1.0, losses=(0.09, 0.05)) == "kernel"  # share 1: no blend to ship
    assert _shipped(0.98, 0.98, 0.97, 0.5, losses=(0.09, 0.05)) == "kernel"
    assert _shipped(0.98, 0.98, 0.97, 0.5, losses=(0.05, 0.09)) == "network"
    assert _shipped(0.99, 0.98, 0.97, 0.5, losses=(0.09, 0.01)) == "network"  # accuracy first
