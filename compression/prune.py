"""Magnitude pruning with tensorflow-model-optimization: a clone of the trained model (the baseline keeps
its weights), every layer tfmot can prune wrapped with prune_low_magnitude on a polynomial-decay schedule
to ``compress.sparsity`` (per-layer overrides by name), fine-tuned on the training split with
UpdatePruningStep, then stripped back to plain Keras layers whose kernels are mostly zeros.

Sparse kernels do not shrink the ONNX file by themselves (dense storage); they shrink its gzip size, and
INT8 quantization of the pruned model (the ``pruned_int8`` variant) compounds both.

    >>> pruned = prune_model(trained, train, cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from compression.finetune import NotApplicable, fine_tune
from training.config import RunConfig
from training.data.dataset import Dataset
from training.fit.build import weights_copy
from training.kinds import kind_of
from training.tf_env import keras

log = logging.getLogger(__name__)


@dataclass
class Pruned:
    model: keras.Model
    sparsity: float  # zeros among the weights of the pruned layers
    layers: dict[str, float]  # pruned layer -> its target sparsity


def _prunable(layer: keras.layers.Layer) -> bool:
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry

    return bool(layer.trainable_weights) and PruneRegistry.supports(layer)


def sparsity_of(model: keras.Model, names: set[str]) -> float:
    """Fraction of zeros among the kernels and embeddings of the named layers."""
    weights = [w for layer in model.layers if layer.name in names for w in layer.get_weights() if w.ndim >= 2]
    total = sum(w.size for w in weights)
    return float(sum(int(np.sum(w == 0)) for w in weights) / total) if total else 0.0


def prune_epochs_for(cfg: RunConfig, task: str) -> int:
    """``compress.prune_epochs``, or the task kind's own when unset (training.tasks)."""
    return cfg.compress.prune_epochs or kind_of(task).prune_epochs


def prune_model(trained: Any, train: Dataset, cfg: RunConfig) -> Pruned:
    """Prune a clone of ``trained.model`` and fine-tune it for prune_epochs_for(cfg, task) epochs on ``train``.

    Raises NotApplicable when no layer of the model can be pruned."""
    import tensorflow_model_optimization as tfmot

    c = cfg.compress
    steps_per_epoch = max(1, math.ceil(len(train) / cfg.train.batch_size))
    # Reach the target after 70% of the fine-tuning steps and hold it for the rest. tfmot prunes only on steps
    # that are multiples of the frequency, so the end step is one: the final sparsity is really applied.
    epochs = prune_epochs_for(cfg, train.task)
    ramp = max(1, int(steps_per_epoch * epochs * 0.7))
    frequency = max(1, min(100, ramp // 10))
    end_step = frequency * max(1, ramp // frequency)
    targets: dict[str, float] = {}

    def wrap(layer: keras.layers.Layer) -> keras.layers.Layer:
        # The wide (linear) half of a text model keeps its weights unless an override names it: it is what the
        # deep half builds on, pruning it cost 0.7 validation points on MR, and it holds few of the weights.
        default = 0.0 if layer.name.startswith("wide_") else c.sparsity
        target = c.sparsity_overrides.get(layer.name, default)
        if target <= 0 or not _prunable(layer):
            return layer
        targets[layer.name] = target
        schedule = tfmot.sparsity.keras.PolynomialDecay(
            0.0, target, begin_step=0, end_step=end_step, frequency=frequency
        )
        return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)

    # The wrappers share the weights of the layers they wrap: wrap a copy, so the trained model keeps its own.
    clone = keras.models.clone_model(weights_copy(trained.model), clone_function=wrap)
    if not targets:
        raise NotApplicable(
            "no layer to prune: tfmot prunes convolutions and dense layers, and a linear model's tables keep their "
            "weights (compress.sparsity_overrides can name a layer)"
        )
    log.info(
        "pruning %d layers to %.0f%% sparsity over %d fine-tuning epochs",
        len(targets),
        100 * c.sparsity,
        epochs,
    )
    fine_tune(clone, train, trained.spec, cfg, epochs, [tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(clone)
    sparsity = sparsity_of(stripped, set(targets))
    log.info("pruned: %.1f%% of the pruned layers' weights are zero", 100 * sparsity)
    return Pruned(model=stripped, sparsity=sparsity, layers=targets)
