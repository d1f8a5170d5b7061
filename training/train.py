"""Fit a model on the training split with early stopping, LR reduction and per-epoch progress logs.

>>> trained = train_model(train_ds, val_ds, load_config(None))  # doctest: +SKIP
>>> trained.history["val_loss"][-1]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.preprocess import Spec
from training.augment import augment, build_augmenter
from training.config import RunConfig
from training.data import Dataset
from training.features import make_spec, to_arrays
from training.models import build_model
from training.optimizers import build_optimizer
from training.tf_env import configure_devices, keras, set_seed, tf

log = logging.getLogger(__name__)


@dataclass
class TrainedModel:
    model: keras.Model
    spec: Spec
    history: dict[str, list[float]]
    device: str
    seconds: float
    x_train: np.ndarray = field(repr=False)

    def summary(self) -> dict[str, Any]:
        """The ``training`` section of report.json."""
        monitor = "val_loss" if "val_loss" in self.history else "loss"
        losses = self.history[monitor]
        return {
            "epochs_run": len(losses),
            "best_epoch": int(np.argmin(losses)) + 1,
            "monitor": monitor,
            "best_" + monitor: round(float(np.min(losses)), 6),
            "final_learning_rate": float(self.history.get("lr", [0.0])[-1]),
            "device": self.device,
            "seconds": round(self.seconds, 1),
            "parameters": int(self.model.count_params()),
        }


class ProgressLog(keras.callbacks.Callback):
    """One log line per epoch instead of Keras' progress bars (which garble captured logs)."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs
        self.started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        shown = " ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items() if k != "lr")
        log.info("epoch %d/%d: %s (%.1fs)", epoch + 1, self.epochs, shown, time.perf_counter() - self.started)


def _batches(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle_seed: int | None = None) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size)


def train_model(train: Dataset, val: Dataset, cfg: RunConfig) -> TrainedModel:
    """Build the spec from the training split, then fit. Labels come from the training split."""
    t = cfg.train
    set_seed(t.seed)
    device = configure_devices()
    spec = make_spec(train, train.label_names, cfg)
    x_train, y_train = to_arrays(train, spec)
    x_val, y_val = to_arrays(val, spec)
    known = y_val >= 0  # a validation label absent from training cannot be scored
    x_val, y_val = x_val[known], y_val[known]
    log.info(
        "training %s model: %d train / %d validation examples, %d classes",
        train.task,
        len(x_train),
        len(x_val),
        len(spec.labels),
    )

    model = build_model(spec, cfg)
    model.compile(optimizer=build_optimizer(t), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    train_ds = _batches(x_train, y_train, t.batch_size, shuffle_seed=t.seed)
    if train.task == "image":
        train_ds = augment(train_ds, build_augmenter(cfg.augment, t.seed))
    has_val = len(x_val) > 0
    monitor = "val_loss" if has_val else "loss"
    callbacks = [
        keras.callbacks.EarlyStopping(monitor=monitor, patience=t.early_stopping_patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, factor=t.reduce_lr_factor, patience=t.reduce_lr_patience, min_lr=t.min_learning_rate
        ),
        ProgressLog(t.epochs),
    ]
    started = time.perf_counter()
    history = model.fit(
        train_ds.prefetch(tf.data.AUTOTUNE),
        validation_data=_batches(x_val, y_val, t.batch_size) if has_val else None,
        epochs=t.epochs,
        callbacks=callbacks,
        verbose=0,
    )
    seconds = time.perf_counter() - started
    hist = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    log.info("trained in %.1fs (%d epochs)", seconds, len(hist["loss"]))
    return TrainedModel(model=model, spec=spec, history=hist, device=device, seconds=seconds, x_train=x_train)
