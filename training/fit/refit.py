"""The shipped model learns from training + validation (DESIGN.md contract 5).

Validation chose everything first: the epoch count (early stopping), the linear half's models and their C or
alpha, whether the network is kept. Then the same recipe runs again on training + validation together, for the
chosen number of epochs with the learning rates the selection run used epoch by epoch, and that model ships.
The test split is never part of either fit.

    >>> shipped = refit(selected, train, val, cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.preprocess import Spec, TextSpec
from training.config import RunConfig, TrainConfig
from training.data.dataset import Dataset, joined
from training.data.features import class_weights, encode_labels, make_spec, to_inputs
from training.fit.build import compiled_model, in_float32
from training.fit.callbacks import ProgressLog, maximises
from training.fit.pipeline import training_batches
from training.models.kernel import KernelChoice, KernelFit, blended_model, kernel_model, refit_kernel
from training.models.linear import LinearFit, linear_model, refit_linear_models
from training.models.text import unreached_rows_zeroed
from training.tf_env import keras

log = logging.getLogger(__name__)


@dataclass
class Selected:
    """What the selection run (fitted on training, judged on validation) decided."""

    model: Any  # the model validation chose: wide & deep, a network, or the linear model alone
    spec: Spec
    history: dict[str, list[float]]
    monitor: str
    linear: LinearFit | None = None
    network_kept: bool = True
    kernel: KernelChoice | None = None  # image models: the kernel model's choice (training.models.kernel)


def best_epochs(history: dict[str, list[float]], monitor: str, mode: str) -> int:
    """How many epochs the selection run's best epoch took (1-based)."""
    values = history.get(monitor) or history.get("loss") or [0.0]
    pick = np.argmax if maximises(monitor, mode) else np.argmin
    return int(pick(values)) + 1


def learning_rates(history: dict[str, list[float]], epochs: int, t: TrainConfig) -> list[float] | None:
    """The learning rate of each of the first ``epochs`` epochs of the selection run, for a constant schedule
    that ReduceLROnPlateau lowered (history holds each epoch's rate at its end: the next epoch's). None for
    the other schedules, which follow the epoch count by themselves."""
    if t.lr_schedule != "constant" or not history.get("lr"):
        return None
    start = float(t.learning_rate or history["lr"][0])
    return ([start] + [float(v) for v in history["lr"]])[:epochs]


def shipped_spec(selected: Spec, everything: Dataset, cfg: RunConfig) -> Spec:
    """The spec for the refit: a text vocabulary and its n-gram buckets from all the data (with the character
    n-grams only if the chosen linear model reads them, and the bag's own bigram buckets only if the selection
    had them); images keep the selection's input size."""
    if not isinstance(selected, TextSpec):
        return selected
    spec = make_spec(everything, selected.labels, cfg)
    assert isinstance(spec, TextSpec)
    if not selected.char_buckets and spec.char_buckets:
        spec = dataclasses.replace(spec, char_buckets=0, char_length=0)
    if not selected.bag_bigram_buckets and spec.bag_bigram_buckets:
        # more data can cross the own-buckets threshold; validation judged the bag on the network's ids
        spec = dataclasses.replace(spec, bag_bigram_buckets=0)
    return spec


def refit(
    chosen: Selected, train: Dataset, val: Dataset, cfg: RunConfig, t: TrainConfig, mixed: bool = False
) -> tuple[Any, Spec, int]:
    """The model that ships, learnt from training + validation; returns it, its spec and the epochs trained.
    ``mixed``: train under mixed_float16, then hand back the same weights in a float32 model (export wants it)."""
    everything = joined(train, val.subset([i for i, label in enumerate(val.labels) if label in chosen.spec.labels]))
    spec = shipped_spec(chosen.spec, everything, cfg)
    weights = class_weights(everything.labels, spec.labels, t)
    linear = _refit_linear(chosen.linear, everything, spec, bool(weights))
    if chosen.linear is not None and not chosen.network_kept:
        assert linear is not None and isinstance(spec, TextSpec)
        log.info("refit: the linear model alone, on %d training + validation items", len(everything))
        return linear_model(spec, cfg.text_model, linear), spec, 0
    kernel = _refit_kernel(chosen.kernel, everything, spec, cfg, t, bool(weights))
    if kernel is not None and chosen.kernel is not None and chosen.kernel.shipped == "kernel":
        log.info("refit: the kernel model alone, on %d training + validation items", len(everything))
        return kernel_model(tuple(int(side) for side in chosen.model.input.shape[1:]), kernel), spec, 0
    epochs = best_epochs(chosen.history, chosen.monitor, t.early_stopping_mode)
    model = compiled_model(spec, cfg, t, math.ceil(len(everything) / t.batch_size), mixed, linear)
    callbacks: list[Any] = [ProgressLog(epochs)]
    rates = learning_rates(chosen.history, epochs, t)
    if rates is not None:
        callbacks.append(keras.callbacks.LearningRateScheduler(lambda epoch, _: rates[min(epoch, len(rates) - 1)]))
    log.info("refit: %s for %d epochs on %d training + validation items", model.name, epochs, len(everything))
    with unreached_rows_zeroed(model, spec, cfg.text_model):
        model.fit(
            training_batches(everything, spec, cfg),
            epochs=epochs,
            class_weight=weights,
            callbacks=callbacks,
            verbose=1 if sys.stdout.isatty() else 0,
        )
    if mixed:
        model = in_float32(model, spec, cfg)
    if kernel is not None and chosen.kernel is not None:
        model = blended_model(model, kernel, chosen.kernel)
    return model, spec, epochs


def _refit_kernel(
    choice: KernelChoice | None, everything: Dataset, spec: Spec, cfg: RunConfig, t: TrainConfig, balanced: bool
) -> KernelFit | None:
    """The kernel model fitted again on training + validation, where validation shipped it (alone or blended)."""
    if choice is None or choice.shipped == "network":
        return None
    x, y = to_inputs(everything, spec), encode_labels(everything.labels, spec.labels)
    return refit_kernel(choice, x, y, len(spec.labels), balanced, cfg.image_model, t.seed)


def _refit_linear(fit: LinearFit | None, everything: Dataset, spec: Spec, balanced: bool) -> LinearFit | None:
    if fit is None:
        return None
    assert isinstance(spec, TextSpec)
    return refit_linear_models(
        fit,
        to_inputs(everything, spec),
        encode_labels(everything.labels, spec.labels),
        spec.input_vocabulary,
        len(spec.labels),
        balanced,
        spec.char_start if spec.char_buckets else None,
        (spec.bag_start, spec.bag_length) if spec.bag_length else None,
    )
