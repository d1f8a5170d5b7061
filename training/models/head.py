"""What every network family shares: weight penalties and the classification head whose last layer,
``probabilities``, is what ONNX exports and serving reads."""

from __future__ import annotations

from typing import Any

from training.config import TrainConfig
from training.tf_env import keras

layers = keras.layers


def regularizer(cfg: TrainConfig) -> Any:
    """L1/L2 weight penalties for Dense and convolution kernels (None when both are 0)."""
    if not (cfg.l1 or cfg.l2):
        return None
    return keras.regularizers.L1L2(l1=cfg.l1, l2=cfg.l2)


def head(features: Any, units: int, dropout: float, classes: int, reg: Any, wide: Any = None) -> Any:
    """Dropout, a hidden Dense layer, dropout, then softmax probabilities (the layer ONNX exports as output).

    ``wide``: per-class logits of a linear model, added to the network's before the softmax."""
    x = layers.Dropout(dropout)(features)
    if units:
        x = layers.Dense(units, activation="relu", kernel_regularizer=reg)(x)
        x = layers.Dropout(dropout)(x)
    # float32 probabilities even under mixed precision, so the exported output and the loss stay exact.
    if wide is None:
        return layers.Dense(classes, activation="softmax", name="probabilities", dtype="float32")(x)
    # Zero weights: training starts from the wide model's predictions exactly, and the network adds to them.
    logits = layers.Dense(classes, dtype="float32", kernel_initializer="zeros", name="deep_logits")(x)
    logits = layers.Add(dtype="float32", name="logits")([logits, wide])
    return layers.Activation("softmax", dtype="float32", name="probabilities")(logits)


def logits_model(model: Any) -> Any:
    """``model`` up to the logits its ``probabilities`` softmax reads, the tensor the exported graph's
    calibration map rescales (a Dense layer with the softmax built in is rebuilt without it, same weights)."""
    output = model.get_layer("probabilities")
    if isinstance(output, layers.Dense):
        dense = layers.Dense(output.units, dtype="float32", name="logits_only")
        logits = dense(output.input)
        dense.set_weights(output.get_weights())
        return keras.Model(model.inputs, logits)
    return keras.Model(model.inputs, output.input)


# ---------------------------------------------------------------- images
