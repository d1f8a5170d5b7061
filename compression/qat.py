"""Quantization-aware training with tensorflow-model-optimization: the ``qat`` and ``pruned_qat`` variants.

A copy of the model has every layer tfmot's default 8-bit scheme supports annotated and quantize_apply'd,
then fine-tunes with fake quantization on the training split, so the weights learn to live on the INT8
grid. ``pruned_qat`` starts from the pruned model with tfmot's prune-preserving scheme (collaborative
optimisation), which keeps the zeros through QAT. The export (compression.quantize.store_weights_int8)
stores those weights as INT8.

tfmot supports Conv2D, DepthwiseConv2D, Dense and friends, not Embedding or Conv1D: a model whose weights
sit mostly in unsupported layers (the text models) is reported as not applicable instead of getting a
QAT variant that quantizes almost nothing.

    >>> result = quantize_aware(model, train, spec, cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from compression.finetune import fine_tune
from serving.preprocess import Spec
from training.config import RunConfig
from training.data import Dataset
from training.tf_env import keras

log = logging.getLogger(__name__)


class NotApplicable(ValueError):
    """A variant cannot be made for this model; the message says why (reported, not raised further)."""


@dataclass
class QuantAware:
    model: keras.Model
    layers: list[str]  # the layers with weights that train quantized
    coverage: float  # their share of the model's parameters


def _registry() -> Any:
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    return default_8bit_quantize_registry.Default8BitQuantizeRegistry()


def quantizable(model: keras.Model) -> tuple[set[str], float]:
    """The layers tfmot's default scheme can quantize, and the share of the parameters in those with weights."""
    registry = _registry()
    names = {layer.name for layer in model.layers if registry.supports(layer)}
    total = sum(layer.count_params() for layer in model.layers)
    covered = sum(layer.count_params() for layer in model.layers if layer.name in names)
    return names, covered / total if total else 0.0


def _unsupported_summary(model: keras.Model, names: set[str]) -> str:
    heavy = sorted(
        (layer for layer in model.layers if layer.name not in names and layer.count_params()),
        key=lambda layer: -layer.count_params(),
    )
    return ", ".join(f"{layer.name} ({type(layer).__name__}, {layer.count_params():,} weights)" for layer in heavy[:3])


def quantize_aware(
    model: keras.Model, train: Dataset, spec: Spec, cfg: RunConfig, prune_preserve: bool = False
) -> QuantAware:
    """QAT of a copy of ``model`` for ``compress.qat_epochs`` on ``train``; ``prune_preserve`` keeps its zeros.

    Raises NotApplicable when the supported layers hold less than ``compress.qat_min_coverage`` of the weights.
    """
    import tensorflow_model_optimization as tfmot

    names, coverage = quantizable(model)
    if coverage < cfg.compress.qat_min_coverage:
        raise NotApplicable(
            f"tfmot's 8-bit QAT supports layers holding {coverage:.0%} of this model's weights (needs "
            f"{cfg.compress.qat_min_coverage:.0%}); the largest unsupported: {_unsupported_summary(model, names)}"
        )
    annotate = tfmot.quantization.keras.quantize_annotate_layer
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    annotated = keras.models.clone_model(
        copy, clone_function=lambda layer: annotate(layer) if layer.name in names else layer
    )
    scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme() if prune_preserve else None
    apply = tfmot.quantization.keras.quantize_apply
    quantized = apply(annotated, scheme) if scheme else apply(annotated)
    epochs = cfg.compress.qat_epochs
    log.info(
        "quantization-aware training%s: %d layers (%.0f%% of the weights), %d epochs",
        " (prune-preserving)" if prune_preserve else "",
        len(names),
        100 * coverage,
        epochs,
    )
    fine_tune(quantized, train, spec, cfg, epochs, [])
    weighted = [layer.name for layer in model.layers if layer.name in names and layer.count_params()]
    return QuantAware(model=quantized, layers=weighted, coverage=coverage)
