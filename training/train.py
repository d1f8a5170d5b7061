"""Fit a model on the training split (tf.data batches) with early stopping, LR reduction, class weights
for imbalanced data and per-epoch progress logs.

>>> trained = train_model(train, val, load_config(None))  # doctest: +SKIP
>>> trained.history["val_loss"][-1]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.preprocess import Spec
from training.config import RunConfig, TrainConfig
from training.data import Dataset
from training.features import make_spec, to_inputs
from training.models import build_model
from training.optimizers import build_optimizer
from training.pipeline import eval_batches, training_batches
from training.tf_env import configure_devices, keras, set_seed

log = logging.getLogger(__name__)


@dataclass
class TrainedModel:
    model: keras.Model
    spec: Spec
    history: dict[str, list[float]]
    device: str
    seconds: float
    calibration: np.ndarray = field(repr=False)  # a sample of training inputs for static quantization
    class_weights: dict[str, float] | None = None
    images_per_s: float = 0.0

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
            "examples_per_s": round(self.images_per_s, 1),
            "parameters": int(self.model.count_params()),
            "class_weights": self.class_weights,
        }


def class_weights(labels: list[str], names: tuple[str, ...], cfg: TrainConfig) -> dict[int, float] | None:
    """Balanced weights (n / (classes * count)) when configured, or by default when the largest class
    is more than ``imbalance_ratio`` times the smallest; None means every example weighs 1."""
    counts = Counter(labels)
    sizes = [counts.get(name, 0) for name in names]
    imbalanced = min(sizes) > 0 and max(sizes) / min(sizes) > cfg.imbalance_ratio
    if cfg.class_weights == "none" or (cfg.class_weights == "auto" and not imbalanced):
        return None
    total = sum(sizes)
    return {i: total / (len(names) * n) for i, n in enumerate(sizes) if n}


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


def train_model(train: Dataset, val: Dataset, cfg: RunConfig) -> TrainedModel:
    """Build the spec from the training split, then fit on tf.data batches. Labels come from the training split."""
    t = cfg.train
    set_seed(t.seed)
    device = configure_devices()
    spec = make_spec(train, train.label_names, cfg)
    known = [i for i, label in enumerate(val.labels) if label in spec.labels]  # others cannot be scored
    val = val.subset(known)
    weights = class_weights(train.labels, spec.labels, t)
    log.info(
        "training %s model: %d train / %d validation examples, %d classes%s",
        train.task,
        len(train),
        len(val),
        len(spec.labels),
        "; balanced class weights (imbalanced classes)" if weights else "",
    )

    model = build_model(spec, cfg)
    model.compile(optimizer=build_optimizer(t), loss="categorical_crossentropy", metrics=["accuracy"])
    has_val = len(val) > 0
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
        training_batches(train, spec, cfg),
        validation_data=eval_batches(val, spec, cfg) if has_val else None,
        epochs=t.epochs,
        class_weight=weights,
        callbacks=callbacks,
        verbose=0,
    )
    seconds = time.perf_counter() - started
    hist = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    log.info("trained in %.1fs (%d epochs)", seconds, len(hist["loss"]))
    return TrainedModel(
        model=model,
        spec=spec,
        history=hist,
        device=device,
        seconds=seconds,
        calibration=calibration_sample(train, spec, cfg.compress.calibration_samples, t.seed),
        class_weights={spec.labels[i]: round(w, 4) for i, w in weights.items()} if weights else None,
        images_per_s=len(train) * len(hist["loss"]) / seconds if seconds else 0.0,
    )


def calibration_sample(train: Dataset, spec: Spec, n: int, seed: int) -> np.ndarray:
    """Model inputs for up to ``n`` random training items (static INT8 calibration reads these)."""
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(train), min(n, len(train)), replace=False).tolist())
    return to_inputs(train.subset(picked), spec)
