"""Keras callbacks for a training run: early stopping, LR on plateau, per-epoch progress and learning
rate, and, when the run has a directory, per-epoch checkpoints (for ``--resume``), a CSV history that
survives a kill, and TensorBoard logs.

    >>> callbacks = build_callbacks(train_config_for(cfg, "image"), True, Path("run"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from training.config import TrainConfig
from training.fit.optimizers import current_learning_rate
from training.tf_env import keras

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
HISTORY = "history.csv"
TENSORBOARD = "tensorboard"
BEST_WEIGHTS = "best.weights.h5"  # the best epoch's weights, across a resume
FINISHED = "trained.keras"  # the trained model, saved before compression starts
SELECTED = "selected.keras"  # the model validation chose, saved before the refit on training + validation
DECISIONS = "trained.json"  # what training decided (the wide half's choices, refit epochs), for a resumed report


class ProgressLog(keras.callbacks.Callback):
    """One log line per epoch (Keras' progress bars garble captured logs), with the learning rate,
    which it also records in the epoch's logs so the history and the learning curves have it."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs
        self.started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if logs is not None:
            logs["lr"] = current_learning_rate(self.model.optimizer)
        shown = " ".join(f"{k} {v:.4g}" for k, v in (logs or {}).items())
        log.info("epoch %d/%d: %s (%.1fs)", epoch + 1, self.epochs, shown, time.perf_counter() - self.started)


class KeepBest(keras.callbacks.Callback):
    """The best epoch's weights, kept in memory by every worker alike. The best-weights file is written by the
    chief of a multi-worker run only, so restoring from it would make the workers diverge (and reading an .h5
    file into MultiWorkerMirroredStrategy's variables fails); the file stays for ``--resume``."""

    def __init__(self, monitor: str, larger_is_better: bool, threshold: float | None):
        super().__init__()
        self.monitor, self.larger_is_better, self.best = monitor, larger_is_better, threshold
        self.weights: list[Any] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        if self.best is None or (value > self.best if self.larger_is_better else value < self.best):
            self.best, self.weights = float(value), self.model.get_weights()


def monitor_name(cfg: TrainConfig, has_validation: bool) -> str:
    """The early-stopping monitor; without a validation split, its training-set twin. ``cfg`` is the task's
    (training.config.train_config_for), where the monitor is always set."""
    monitor = cfg.early_stopping_monitor
    assert monitor is not None, "an unresolved TrainConfig: pass train_config_for(cfg, task)"
    return monitor if has_validation or not monitor.startswith("val_") else monitor[len("val_") :]


def build_callbacks(
    cfg: TrainConfig, has_validation: bool, run_dir: Path | None, resume: bool = False
) -> tuple[list[keras.callbacks.Callback], keras.callbacks.EarlyStopping, KeepBest]:
    """The run's callbacks, its EarlyStopping (to ask afterwards whether it stopped early) and its KeepBest
    (the best epoch's weights; None when no epoch of this process beat the one before a resume).

    Without ``resume``, checkpoints and history left in ``run_dir`` by an earlier run are removed, so a
    new run never continues an old one by accident.
    """
    monitor = monitor_name(cfg, has_validation)
    # A resumed run carries on from the best value before the kill: an epoch counts as an improvement
    # (for early stopping and the best-weights file) only if it beats that.
    best_so_far = _best(read_history(run_dir).get(monitor, []), monitor, cfg) if run_dir and resume else None
    early = keras.callbacks.EarlyStopping(
        monitor=monitor,
        mode=cfg.early_stopping_mode,
        patience=cfg.early_stopping_patience,
        min_delta=cfg.early_stopping_min_delta,
        baseline=best_so_far,
        restore_best_weights=False,  # KeepBest restores after fit: a second in-memory copy would be dead work
    )
    best = KeepBest(monitor, maximises(monitor, cfg.early_stopping_mode), best_so_far)
    callbacks: list[keras.callbacks.Callback] = [early, best]
    if cfg.reduce_lr_on_plateau and cfg.lr_schedule == "constant":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor,
                mode=cfg.early_stopping_mode,
                factor=cfg.reduce_lr_factor,
                patience=cfg.reduce_lr_patience,
                min_lr=cfg.min_learning_rate,
            )
        )
    callbacks.append(ProgressLog(cfg.epochs))
    if run_dir is not None:
        if not resume:
            shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)
            for stale in (HISTORY, BEST_WEIGHTS, FINISHED, SELECTED, DECISIONS):
                (run_dir / stale).unlink(missing_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        callbacks += [
            keras.callbacks.CSVLogger(str(run_dir / HISTORY), append=True),
            keras.callbacks.ModelCheckpoint(
                str(run_dir / BEST_WEIGHTS),
                monitor=monitor,
                mode=cfg.early_stopping_mode,
                save_best_only=True,
                save_weights_only=True,
                initial_value_threshold=best_so_far,
            ),
            keras.callbacks.TensorBoard(str(run_dir / TENSORBOARD), write_graph=False, profile_batch=0),
            # After the history (callbacks run in order): a checkpoint never claims an epoch the CSV lacks.
            keras.callbacks.BackupAndRestore(str(run_dir / CHECKPOINTS)),
        ]
    return callbacks, early, best


def maximises(monitor: str, mode: str) -> bool:
    """Whether a larger ``monitor`` is better under early-stopping ``mode`` ("auto" as Keras reads it)."""
    return mode == "max" or (mode == "auto" and ("acc" in monitor or monitor.endswith("auc")))


def _best(values: list[float], monitor: str, cfg: TrainConfig) -> float | None:
    if not values:
        return None
    return max(values) if maximises(monitor, cfg.early_stopping_mode) else min(values)


def read_history(run_dir: Path) -> dict[str, list[float]]:
    """The per-epoch history CSV of a run (all epochs, across a resume), as columns."""
    import csv

    path = run_dir / HISTORY
    if not path.exists():
        return {}
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    # A resumed run appends from its restored epoch: keep the last row written for each epoch.
    by_epoch: dict[int, dict[str, Any]] = {int(row["epoch"]): row for row in rows if row.get("epoch")}
    ordered = [by_epoch[e] for e in sorted(by_epoch)]
    keys = [k for k in (ordered[0] if ordered else {}) if k != "epoch"]
    return {k: [float(row[k]) for row in ordered if row.get(k) not in (None, "")] for k in keys}
