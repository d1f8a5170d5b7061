"""Optimizers by name, so a YAML config can pick one: ``train.optimizer: rmsprop``."""

from __future__ import annotations

from training.config import ConfigError, TrainConfig
from training.tf_env import keras

_BUILDERS = {
    "adam": lambda lr: keras.optimizers.Adam(lr),
    "adamw": lambda lr: keras.optimizers.AdamW(lr, weight_decay=1e-4),
    "sgd": lambda lr: keras.optimizers.SGD(lr),
    "momentum": lambda lr: keras.optimizers.SGD(lr, momentum=0.9),
    "nesterov": lambda lr: keras.optimizers.SGD(lr, momentum=0.9, nesterov=True),
    "rmsprop": lambda lr: keras.optimizers.RMSprop(lr),
    "adagrad": lambda lr: keras.optimizers.Adagrad(lr),
}

OPTIMIZERS = tuple(_BUILDERS)


def build_optimizer(cfg: TrainConfig) -> keras.optimizers.Optimizer:
    try:
        builder = _BUILDERS[cfg.optimizer.lower()]
    except KeyError:
        raise ConfigError(f"train.optimizer {cfg.optimizer!r} is unknown; choose one of: {', '.join(OPTIMIZERS)}") from None
    return builder(cfg.learning_rate)
