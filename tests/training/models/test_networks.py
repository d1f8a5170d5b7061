"""Every model family trains, prunes with tfmot, exports with tf2onnx matching Keras, and quantizes with ORT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from compression.export import to_onnx
from compression.quantize import quantize_dynamic_int8
from serving.preprocess import ImageSpec, TextSpec, encode_texts
from training.config import BACKBONE_SIDES, IMAGE_ARCHITECTURES, TEXT_ARCHITECTURES, load_config
from training.kinds import kind_of
from training.tf_env import keras, set_seed

pytestmark = pytest.mark.slow


def _prunable_clone(model: keras.Model) -> keras.Model:
    """tfmot magnitude pruning on every layer tfmot supports (others, like attention, stay as they are)."""
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry

    schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=1)

    def wrap(layer: keras.layers.Layer) -> keras.layers.Layer:
        if PruneRegistry.supports(layer) and layer.trainable_weights:
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    return keras.models.clone_model(model, clone_function=wrap)


def _check_family(model: keras.Model, x: np.ndarray, y: np.ndarray, tmp_path: Path, spec) -> None:  # type: ignore[no-untyped-def]
    import tensorflow_model_optimization as tfmot

    model.compile("adam", "categorical_crossentropy")
    losses = model.fit(x, y, epochs=4, batch_size=16, verbose=0).history["loss"]
    assert losses[-1] < losses[0]  # it learns

    pruned = _prunable_clone(model)
    pruned.compile("adam", "categorical_crossentropy")
    pruned.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    kernels = [w for w in stripped.get_weights() if w.ndim >= 2 and w.size >= 64]
    assert kernels and max(float(np.mean(w == 0)) for w in kernels) >= 0.45  # half the weights pruned

    fp32 = to_onnx(model, spec, tmp_path / "fp32.onnx")
    session = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    onnx_probs = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert np.max(np.abs(onnx_probs - model.predict(x, verbose=0))) <= 1e-4
    int8 = quantize_dynamic_int8(fp32, tmp_path / "int8.onnx")
    quantized = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    q_probs = quantized.run(None, {quantized.get_inputs()[0].name: x})[0]
    assert q_probs.shape == onnx_probs.shape and np.allclose(q_probs.sum(1), 1, atol=1e-3)
    assert to_onnx(stripped, spec, tmp_path / "pruned.onnx").exists()


# mobilenet_v3_small goes through all of this and more in tests/e2e/test_backbones.py (a whole `kiln run`: every
# variant exported with parity, pruned, quantized, served); building and converting it twice cost CI ~40 s.
E2E_BACKBONE = "mobilenet_v3_small"


@pytest.mark.parametrize("architecture", [a for a in IMAGE_ARCHITECTURES if a != E2E_BACKBONE])
def test_image_family(architecture: str, tmp_path: Path) -> None:
    set_seed(0)
    image_model = {"architecture": architecture, "filters": [8, 16], "dense_units": 16}
    backbone = architecture in BACKBONE_SIDES  # the smallest input Keras Applications build, and no download
    side = 32 if backbone else 12
    cfg = load_config(None, {"image_model": image_model | ({"pretrained": "none"} if backbone else {})})
    spec = ImageSpec(labels=("a", "b", "c"), height=side, width=side, channels=3)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 64)
    x = rng.random((64, side, side, 3)).astype(np.float32) * 0.3
    for label in range(3):  # each class a bright band in its own rows: a pattern, which standardisation keeps
        x[y == label, label * side // 3 : (label + 1) * side // 3] += 0.6
    _check_family(kind_of(spec.kind).build_model(spec, cfg), x, np.eye(3)[y], tmp_path, spec)


@pytest.mark.parametrize("architecture", [*TEXT_ARCHITECTURES, "hybrid+wide", "hybrid+wide+chars", "cnn+wide+chars"])
def test_text_family(architecture: str, tmp_path: Path) -> None:
    set_seed(0)
    family, *extras = architecture.split("+")
    wide, chars = "wide" in extras, "chars" in extras
    overrides = {"architecture": family, "embedding_dim": 16, "filters": 8, "rnn_units": 8, "dense_units": 8}
    overrides |= {"wide": wide, "wide_trainable": wide}
    cfg = load_config(None, {"text_model": overrides | {"ngram_buckets": 64}})
    words = ("", "[UNK]", "good", "bad", "film", "plot", "not")
    char_ids = {"char_buckets": 32, "char_length": 40} if chars else {}
    spec = TextSpec(labels=("neg", "pos"), vocabulary=words, max_length=6, ngram_buckets=64, **char_ids)
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words[2:], 4)) for _ in range(64)]
    y = np.array([int(t.count("good") > t.count("bad")) for t in texts])
    x = encode_texts(texts, spec)
    assert x.shape == (64, 12 + 40 * chars) and x[:, 6:12].max() >= len(words)  # bigram ids follow the words
    if chars:  # then character n-gram ids, which only the linear half reads
        assert x[:, 12:].min() >= spec.char_start and x[:, 12:].max() < spec.input_vocabulary
    _check_family(kind_of(spec.kind).build_model(spec, cfg), x, np.eye(2)[y], tmp_path, spec)


def test_per_image_standardisation_removes_lighting_and_keeps_the_picture() -> None:
    from training.models.layers import PerImageStandardize

    rng = np.random.default_rng(0)
    images = rng.random((4, 8, 8, 3)).astype(np.float32)
    layer = PerImageStandardize()
    out = layer(images).numpy()
    assert np.allclose(out.mean(axis=(1, 2, 3)), 0, atol=1e-5) and np.allclose(out.std(axis=(1, 2, 3)), 1, atol=1e-3)
    dim = images * 0.3 + 0.05  # the same scenes photographed darker, with less contrast
    assert np.allclose(layer(dim).numpy(), out, atol=1e-4)
    flat = layer(np.full((1, 8, 8, 3), 0.7, np.float32)).numpy()  # no spread: zeros, not NaN
    assert np.all(np.isfinite(flat)) and np.allclose(flat, 0)
