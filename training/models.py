"""Model builders: a small CNN for images, embedding + 1-D convolution for texts (tf_keras).

Inputs are numeric tensors only (float32 images, int32 token ids) so the ONNX export needs no
string ops; the last layer is named ``probabilities``.

    >>> model = build_model(ImageSpec(labels=("a", "b")), RunConfig())  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from serving.preprocess import ImageSpec, Spec, TextSpec
from training.config import ImageModelConfig, RunConfig, TextModelConfig, TrainConfig
from training.tf_env import keras

layers = keras.layers


def _regularizer(cfg: TrainConfig) -> Any:
    """L1/L2 weight penalties for Dense and convolution kernels (None when both are 0)."""
    if not (cfg.l1 or cfg.l2):
        return None
    return keras.regularizers.L1L2(l1=cfg.l1, l2=cfg.l2)


def _head(features: Any, units: int, dropout: float, classes: int, reg: Any) -> Any:
    """Dropout, a hidden Dense layer, dropout, then softmax probabilities (the layer ONNX exports as output)."""
    x = layers.Dropout(dropout)(features)
    x = layers.Dense(units, activation="relu", kernel_regularizer=reg)(x)
    x = layers.Dropout(dropout)(x)
    # float32 probabilities even under mixed precision, so the exported output and the loss stay exact.
    return layers.Dense(classes, activation="softmax", name="probabilities", dtype="float32")(x)


def _conv(x: Any, filters: int, cfg: ImageModelConfig, reg: Any) -> Any:
    if not cfg.batch_norm:
        return layers.Conv2D(filters, 3, padding="same", activation="relu", kernel_regularizer=reg)(x)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=reg)(x)
    return layers.ReLU()(layers.BatchNormalization()(x))


def build_image_model(spec: ImageSpec, cfg: ImageModelConfig, train: TrainConfig) -> keras.Model:
    reg = _regularizer(train)
    inputs = keras.Input((spec.height, spec.width, spec.channels), name="image")
    x = inputs
    for filters in cfg.filters:
        x = _conv(x, filters, cfg, reg)
        x = _conv(x, filters, cfg, reg)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    outputs = _head(x, cfg.dense_units, cfg.dropout, len(spec.labels), reg)
    return keras.Model(inputs, outputs, name="image_cnn")


def build_text_model(spec: TextSpec, cfg: TextModelConfig, train: TrainConfig) -> keras.Model:
    reg = _regularizer(train)
    inputs = keras.Input((spec.max_length,), dtype="int32", name="tokens")
    x = layers.Embedding(len(spec.vocabulary), cfg.embedding_dim)(inputs)
    x = layers.Conv1D(cfg.filters, cfg.kernel_size, padding="same", activation="relu", kernel_regularizer=reg)(x)
    x = layers.GlobalMaxPooling1D()(x)
    outputs = _head(x, cfg.dense_units, cfg.dropout, len(spec.labels), reg)
    return keras.Model(inputs, outputs, name="text_cnn")


def build_model(spec: Spec, cfg: RunConfig) -> keras.Model:
    if isinstance(spec, ImageSpec):
        return build_image_model(spec, cfg.image_model, cfg.train)
    return build_text_model(spec, cfg.text_model, cfg.train)
