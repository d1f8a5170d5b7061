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

import functools
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from compression.finetune import NotApplicable, fine_tune
from serving.preprocess import Spec
from serving.runtime import OFFLINE_BATCH
from training.config import RunConfig
from training.data.dataset import Dataset
from training.fit.build import weights_copy
from training.models.layers import PerImageStandardize
from training.tf_env import keras

log = logging.getLogger(__name__)


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


# Weightless custom layers tfmot's registries do not know, quantized at their output as tfmot quantizes the
# activations of the layers it knows (the prune-preserving scheme refuses a model holding an unknown layer).
OUTPUT_QUANTIZED_LAYERS: tuple[type, ...] = (PerImageStandardize,)


@functools.cache
def _output_only_config() -> type:
    """A tfmot QuantizeConfig with no weights or activations to quantize and one 8-bit output quantizer (made on
    first use: tfmot loads only when a QAT variant is made)."""
    import tensorflow_model_optimization as tfmot

    quantizers = tfmot.quantization.keras.quantizers

    class OutputQuantized(tfmot.quantization.keras.QuantizeConfig):  # type: ignore[misc]
        def get_weights_and_quantizers(self, layer: Any) -> list[Any]:
            return []

        def get_activations_and_quantizers(self, layer: Any) -> list[Any]:
            return []

        def set_quantize_weights(self, layer: Any, quantize_weights: list[Any]) -> None:
            pass

        def set_quantize_activations(self, layer: Any, quantize_activations: list[Any]) -> None:
            pass

        def get_output_quantizers(self, layer: Any) -> list[Any]:
            return [quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

        def get_config(self) -> dict[str, Any]:
            return {}

    return OutputQuantized


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


def _ranges(model: keras.Model, calibration: np.ndarray) -> dict[str, dict[str, tuple[float, float]]]:
    """Per layer of the float ``model``: the range of its input, pre-activation and output on ``calibration``
    (always containing 0, as tfmot's quantizers require).

    The sample goes through in runs of ``OFFLINE_BATCH``: every layer's output for 256 photos at once took
    about 1 GiB that the process kept. A range is the smallest minimum and largest maximum over the runs (the
    same as over the whole sample, up to the rounding of a different batch size)."""
    if not len(calibration):
        raise ValueError("QAT's activation ranges need calibration items; the calibration sample is empty")
    # A fresh graph: layers of a stripped (pruned) model also belong to the graph they were cloned from.
    model = weights_copy(model)
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    activated = [
        layer
        for layer in layers
        if isinstance(layer, keras.layers.Dense) and getattr(layer, "activation", None) is not None
    ]
    inbound = [layer.input[0] if isinstance(layer.input, list) else layer.input for layer in activated]
    weights = [(layer.get_weights()[0], layer.get_weights()[1] if layer.use_bias else 0.0) for layer in activated]
    probe = keras.Model(model.inputs, [layer.output for layer in layers] + inbound)
    by_layer: dict[str, dict[str, tuple[float, float]]] = {}

    def widen(name: str, key: str, values: np.ndarray) -> None:
        lo, hi = by_layer.setdefault(name, {}).get(key, (0.0, 0.0))
        by_layer[name][key] = (min(lo, float(values.min())), max(hi, float(values.max())))

    for start in range(0, len(calibration), OFFLINE_BATCH):
        # Direct calls, not predict(): one probe per model, no tf.function retracing warnings.
        outputs = probe(calibration[start : start + OFFLINE_BATCH], training=False)
        outputs = [np.asarray(o) for o in (outputs if isinstance(outputs, list) else [outputs])]
        for layer, out in zip(layers, outputs[: len(layers)], strict=True):
            widen(layer.name, "output", out)
        for layer, (kernel, bias), hidden in zip(activated, weights, outputs[len(layers) :], strict=True):
            widen(layer.name, "pre_activation", hidden @ kernel + bias)
    return by_layer


def _start_ranges(quantized: keras.Model, model: keras.Model, calibration: np.ndarray) -> int:
    """Start tfmot's activation ranges at what the float model produces on the calibration sample.

    tfmot starts them at [-6, 6] and moves them by an exponential average with decay 0.999: after the few
    hundred steps of a short fine-tune a ReLU output still "ranges" down to about -5, wasting half the INT8
    levels, and ONNX Runtime cannot fuse the ReLU into an integer kernel (its zero point is not 0).
    Returns the number of ranges set."""
    ranges = _ranges(model, calibration)
    suffixes = {"post_activation": "output", "output": "output", "pre_activation": "pre_activation"}
    count = 0
    for layer in quantized.layers:
        wrapped = getattr(layer, "layer", None)
        if isinstance(layer, keras.layers.Layer) and layer.name == "quantize_layer":
            source = (min(0.0, float(calibration.min())), max(0.0, float(calibration.max())))
            found = {"min": source[0], "max": source[1]}
        elif wrapped is not None and wrapped.name in ranges:
            found = {}
            for weight in layer.non_trainable_weights:
                base = weight.name.split("/")[-1].split(":")[0]
                for prefix, key in suffixes.items():
                    if base in (f"{prefix}_min", f"{prefix}_max") and key in ranges[wrapped.name]:
                        lo, hi = ranges[wrapped.name][key]
                        found[base] = lo if base.endswith("_min") else hi
        else:
            continue
        for weight in layer.non_trainable_weights:
            base = weight.name.split("/")[-1].split(":")[0]
            key = base.rsplit("_", 1)[-1] if layer.name == "quantize_layer" else base
            if key in found and base.endswith(("_min", "_max")):
                weight.assign(found[key])
                count += 1
    return count


def quantize_aware(
    model: keras.Model,
    train: Dataset,
    spec: Spec,
    cfg: RunConfig,
    calibration: np.ndarray,
    prune_preserve: bool = False,
) -> QuantAware:
    """QAT of a copy of ``model`` for ``compress.qat_epochs`` on ``train``, activation ranges started from
    ``calibration`` (model inputs); ``prune_preserve`` keeps its zeros.

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
    output_only = _output_only_config()

    def annotated_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
        if layer.name in names:
            return annotate(layer)
        if isinstance(layer, OUTPUT_QUANTIZED_LAYERS):  # Kiln's weightless layers: their output on the INT8 grid
            return annotate(layer, quantize_config=output_only())
        return layer

    annotated = keras.models.clone_model(weights_copy(model), clone_function=annotated_layer)
    scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme() if prune_preserve else None
    apply = tfmot.quantization.keras.quantize_apply
    try:
        with tfmot.quantization.keras.quantize_scope({output_only.__name__: output_only}):
            quantized = apply(annotated, scheme) if scheme else apply(annotated)
    except ValueError as exc:  # the prune-preserving scheme asks every layer for a config, custom ones too
        if scheme is None or "unsupported layer" not in str(exc):
            raise
        raise NotApplicable(f"tfmot's prune-preserving QAT cannot take this model's layers: {exc}") from exc
    started = _start_ranges(quantized, model, calibration)
    epochs = cfg.compress.qat_epochs
    log.info(
        "quantization-aware training%s: %d layers (%.0f%% of the weights), %d ranges from calibration, %d epochs",
        " (prune-preserving)" if prune_preserve else "",
        len(names),
        100 * coverage,
        started,
        epochs,
    )
    fine_tune(quantized, train, spec, cfg, epochs, [])
    weighted = [layer.name for layer in model.layers if layer.name in names and layer.count_params()]
    return QuantAware(model=quantized, layers=weighted, coverage=coverage)
