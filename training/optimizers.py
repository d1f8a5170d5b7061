"""Optimizers by name, so a YAML config can pick one: ``train.optimizer: rmsprop``."""

from __future__ import annotations

from training.config import OPTIMIZERS, TrainConfig
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

assert set(_BUILDERS) == set(OPTIMIZERS), "config.OPTIMIZERS and the builders must list the same names"


def build_optimizer(cfg: TrainConfig) -> keras.optimizers.Optimizer:
    """The optimizer named by ``cfg.optimizer`` (validated when the config was loaded)."""
    return _BUILDERS[cfg.optimizer](cfg.learning_rate)
