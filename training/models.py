"""Model builders: a small CNN for images, embedding + 1-D convolution for texts (tf_keras).

Inputs are numeric tensors only (float32 images, int32 token ids) so the ONNX export needs no
string ops; the last layer is named ``probabilities``.

    >>> model = build_model(ImageSpec(labels=("a", "b")), RunConfig())  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from serving.preprocess import ImageSpec, Spec, TextSpec
from training.config import ImageModelConfig, RunConfig, TextModelConfig
from training.tf_env import keras

layers = keras.layers


def _head(features: Any, units: int, dropout: float, classes: int) -> Any:
    """Dropout, a hidden Dense layer, dropout, then softmax probabilities (the layer ONNX exports as output)."""
    x = layers.Dropout(dropout)(features)
    x = layers.Dense(units, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    return layers.Dense(classes, activation="softmax", name="probabilities")(x)


def build_image_model(spec: ImageSpec, cfg: ImageModelConfig) -> keras.Model:
    inputs = keras.Input((spec.height, spec.width, spec.channels), name="image")
    x = inputs
    for filters in cfg.filters:
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    return keras.Model(inputs, _head(x, cfg.dense_units, cfg.dropout, len(spec.labels)), name="image_cnn")


def build_text_model(spec: TextSpec, cfg: TextModelConfig) -> keras.Model:
    inputs = keras.Input((spec.max_length,), dtype="int32", name="tokens")
    x = layers.Embedding(len(spec.vocabulary), cfg.embedding_dim)(inputs)
    x = layers.Conv1D(cfg.filters, cfg.kernel_size, padding="same", activation="relu")(x)
    x = layers.GlobalMaxPooling1D()(x)
    return keras.Model(inputs, _head(x, cfg.dense_units, cfg.dropout, len(spec.labels)), name="text_cnn")


def build_model(spec: Spec, cfg: RunConfig) -> keras.Model:
    if isinstance(spec, ImageSpec):
        return build_image_model(spec, cfg.image_model)
    return build_text_model(spec, cfg.text_model)
