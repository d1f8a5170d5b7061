"""Optimizers and learning-rate schedules by name, so a YAML config can pick them:
``train: {optimizer: nesterov, lr_schedule: cosine, warmup_epochs: 2, clip_norm: 1.0}``.

Schedules are set per optimizer step, so they need the number of steps per epoch.

    >>> optimizer = build_optimizer(TrainConfig(lr_schedule="one_cycle"), steps_per_epoch=100)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Any

from training.config import LR_SCHEDULES, Optimizer, TrainConfig
from training.tf_env import keras, tf

# Keyed by config's Optimizer names (mypy rejects any other key); tests/training/test_optimizers.py checks that
# every name has a builder.
_OPTIMIZERS: dict[Optimizer, Any] = {
    "adam": lambda lr, **kw: keras.optimizers.Adam(lr, **kw),
    "adamw": lambda lr, **kw: keras.optimizers.AdamW(lr, **{**kw, "weight_decay": kw.get("weight_decay") or 1e-4}),
    "sgd": lambda lr, **kw: keras.optimizers.SGD(lr, **kw),
    "momentum": lambda lr, **kw: keras.optimizers.SGD(lr, momentum=0.9, **kw),
    "nesterov": lambda lr, **kw: keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, **kw),
    "rmsprop": lambda lr, **kw: keras.optimizers.RMSprop(lr, **kw),
    "adagrad": lambda lr, **kw: keras.optimizers.Adagrad(lr, **kw),
}


@keras.utils.register_keras_serializable(package="kiln")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Warm up linearly from peak/25 to ``peak`` over the first ``warmup`` share of steps, then anneal
    with a cosine to peak/10^4 (Smith's one-cycle policy)."""

    def __init__(self, peak: float, total_steps: int, warmup: float = 0.3):
        self.peak, self.total_steps, self.warmup = peak, max(1, total_steps), warmup

    def __call__(self, step: Any) -> Any:
        step = tf.cast(step, tf.float32)
        up = max(1.0, self.warmup * self.total_steps)
        start, end = self.peak / 25.0, self.peak / 1e4
        rising = start + (self.peak - start) * step / up
        progress = tf.clip_by_value((step - up) / max(1.0, self.total_steps - up), 0.0, 1.0)
        falling = end + (self.peak - end) * 0.5 * (1.0 + tf.cos(math.pi * progress))
        return tf.where(step < up, rising, falling)

    def get_config(self) -> dict[str, Any]:
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup": self.warmup}


def build_schedule(cfg: TrainConfig, steps_per_epoch: int) -> Any:
    """The learning rate (a float for ``constant``) or a LearningRateSchedule named by ``cfg.lr_schedule``."""
    assert cfg.lr_schedule in LR_SCHEDULES, cfg.lr_schedule
    # Unset (None) only before train_config_for fills in the task's default; 1e-3 is the image one.
    lr, steps = cfg.learning_rate or 1e-3, max(1, steps_per_epoch)
    total = steps * cfg.epochs
    schedules = keras.optimizers.schedules
    if cfg.lr_schedule == "step":
        return schedules.ExponentialDecay(lr, steps * cfg.decay_every_epochs, cfg.decay_rate, staircase=True)
    if cfg.lr_schedule == "exponential":
        return schedules.ExponentialDecay(lr, steps, cfg.decay_rate)
    if cfg.lr_schedule == "cosine":
        warmup = int((cfg.warmup_epochs or 0.0) * steps)
        if warmup == 0:
            return schedules.CosineDecay(lr, total, alpha=0.01)
        return schedules.CosineDecay(
            lr / 100, max(1, total - warmup), alpha=0.01, warmup_target=lr, warmup_steps=warmup
        )
    if cfg.lr_schedule == "cosine_restarts":
        return schedules.CosineDecayRestarts(lr, steps * cfg.restart_epochs, alpha=0.01)
    if cfg.lr_schedule == "one_cycle":
        return OneCycle(lr, total)
    return lr


def build_optimizer(cfg: TrainConfig, steps_per_epoch: int = 1) -> keras.optimizers.Optimizer:
    """The optimizer named by ``cfg.optimizer`` with its schedule, weight decay and clipping."""
    options: dict[str, Any] = {}
    if cfg.weight_decay:
        options["weight_decay"] = cfg.weight_decay
    if cfg.clip_norm:
        options["global_clipnorm"] = cfg.clip_norm
    if cfg.clip_value:
        options["clipvalue"] = cfg.clip_value
    return _OPTIMIZERS[cfg.optimizer](build_schedule(cfg, steps_per_epoch), **options)


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The learning rate the optimizer uses at its current step (schedules evaluated)."""
    return float(keras.backend.get_value(optimizer.learning_rate))
