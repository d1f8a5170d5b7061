"""Every optimizer and learning-rate schedule, by name, trains a tiny model with falling loss."""

from __future__ import annotations

import numpy as np
import pytest

from training.config import LR_SCHEDULES, OPTIMIZERS, RunConfig, TrainConfig, train_config_for
from training.fit.optimizers import _OPTIMIZERS, build_optimizer, current_learning_rate
from training.tf_env import keras, set_seed

STEPS_PER_EPOCH = 8


def _fit(cfg: TrainConfig) -> tuple[list[float], list[float]]:
    """Train a softmax regression on separable blobs; returns (loss per epoch, lr per epoch). Settings left
    unset take the text task's defaults (a constant rate, no smoothing)."""
    cfg = train_config_for(RunConfig(train=cfg), "text")
    set_seed(0)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 256)
    x = rng.normal(size=(256, 4)).astype(np.float32) + np.eye(3, 4)[y] * 3
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(
        build_optimizer(cfg, STEPS_PER_EPOCH), keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing)
    )
    rates: list[float] = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: rates.append(current_learning_rate(model.optimizer))
    )
    history = model.fit(x, np.eye(3)[y], batch_size=32, epochs=cfg.epochs, verbose=0, callbacks=[record])
    return history.history["loss"], rates


def test_every_configurable_optimizer_has_a_builder_and_no_other() -> None:
    assert sorted(_OPTIMIZERS) == sorted(OPTIMIZERS)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_lowers_the_loss(optimizer: str) -> None:
    lr = 0.05 if optimizer in ("sgd", "adagrad") else 0.01
    losses, _ = _fit(TrainConfig(optimizer=optimizer, learning_rate=lr, epochs=6, weight_decay=1e-4, clip_norm=5.0))
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("schedule", LR_SCHEDULES)
def test_every_schedule_lowers_the_loss_and_moves_the_rate_as_named(schedule: str) -> None:
    cfg = TrainConfig(
        lr_schedule=schedule,
        learning_rate=0.02,
        epochs=6,
        warmup_epochs=1,
        decay_every_epochs=2,
        restart_epochs=2,
        label_smoothing=0.1,
        clip_value=1.0,
    )
    losses, rates = _fit(cfg)
    assert losses[-1] < 0.7 * losses[0], losses
    if schedule == "constant":
        assert rates == pytest.approx([0.02] * 6)
    elif schedule == "step":
        assert rates[0] == pytest.approx(0.02) and rates[2] == pytest.approx(0.01) and rates[4] == pytest.approx(0.005)
    elif schedule == "cosine_restarts":
        assert rates[2] > rates[1]  # a restart after two epochs
    else:  # exponential, cosine, one_cycle all end far below the peak
        assert rates[-1] < 0.2 * max(rates)
    if schedule == "one_cycle":
        assert rates[0] < rates[1]  # warming up first
