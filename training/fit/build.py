"""A model ready to fit, the same weights in float32, and a model's file for inference: shared by the selection
run, the refit and the store.

>>> model = compiled_model(spec, cfg, t, steps, mixed=False, linear=fit)  # doctest: +SKIP
>>> save_for_inference(model, run_dir / "trained.keras")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from serving.preprocess import Spec
from training.config import RunConfig, TrainConfig
from training.fit.optimizers import build_optimizer
from training.kinds import kind_of
from training.models.linear import LinearFit, warm_start
from training.tf_env import keras, precision


def compiled_model(
    spec: Spec, cfg: RunConfig, t: TrainConfig, steps: int, mixed: bool, linear: LinearFit | None = None
) -> Any:
    """The spec's model built under mixed_float16 or float32 and compiled with the configured optimizer
    (Keras adds loss scaling under mixed_float16); a joint wide & deep model starts from ``linear``."""
    with precision("mixed_float16" if mixed else "float32"):
        model = kind_of(spec.kind).build_model(spec, cfg)
        compile_for_training(model, t, steps)
        if linear is not None and cfg.text_model.wide_mode == "joint":
            warm_start(model, linear)
    return model


def compile_for_training(model: Any, t: TrainConfig, steps: int) -> None:
    """Compile ``model`` with ``t``'s optimizer and schedule (``steps`` per epoch) and the run's loss and metric."""
    model.compile(
        optimizer=build_optimizer(t, steps),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing),
        metrics=["accuracy"],
        jit_compile=t.jit_compile,
    )


def in_float32(model: Any, spec: Spec, cfg: RunConfig) -> Any:
    """The same weights in a float32 model: export and serving want float32 weights and math."""
    float32 = kind_of(spec.kind).build_model(spec, cfg)
    float32.set_weights(model.get_weights())
    return float32


def weights_copy(model: Any) -> Any:
    """A new, uncompiled model of the same layers holding a copy of ``model``'s weights: nothing it does (wrapping
    for tfmot, leaving a distribution strategy, saving) reaches the original or its optimizer."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def save_for_inference(model: Any, path: Path) -> Path:
    """``model`` as a ``.keras`` file without its optimizer's state: every reader loads it uncompiled (a resume,
    the refit, ``kiln compress`` of a stored version, the bench's Keras peer), and Adam's two slots per trainable
    weight made the file 2.5 times its weights (a stored SUBJ model: 74 MB, 30 MB without them)."""
    weights_copy(model).save(path)  # uncompiled: no optimizer to save
    return path
