"""The second phase of training a pretrained backbone: after the head has learnt on the frozen backbone, the top
``image_model.fine_tune_fraction`` of the backbone's layers train too, at ``fine_tune_lr_factor`` times the learning
rate, for up to ``fine_tune_epochs`` with early stopping. Batch normalisation layers stay frozen (their statistics
come from ImageNet; a small data set's batches would overwrite them). The phase's weights are kept only when they
beat the first phase's best validation score.

    >>> history = fine_tune_backbone(model, train, val, spec, cfg, t, 0.41, None)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from serving.preprocess import Spec
from training.config import RunConfig, TrainConfig
from training.data.dataset import Dataset
from training.fit.build import compile_for_training
from training.fit.callbacks import HISTORY, KeepBest, ProgressLog, maximises, monitor_name
from training.fit.pipeline import eval_batches, training_batches
from training.models.image import BACKBONE_LAYERS
from training.tf_env import keras

log = logging.getLogger(__name__)


def unfreeze_top(model: Any, names: tuple[str, ...], fraction: float) -> int:
    """Make the top ``fraction`` of the backbone's layers trainable, batch normalisation excepted; returns how many
    layers with weights now train."""
    top = names[len(names) - math.ceil(len(names) * fraction) :] if fraction > 0 else ()
    opened = 0
    for name in top:
        layer = model.get_layer(name)
        if isinstance(layer, keras.layers.BatchNormalization):
            continue
        layer.trainable = True
        opened += bool(layer.weights)
    return opened


def fine_tune_backbone(
    model: Any,
    train: Dataset,
    val: Dataset,
    spec: Spec,
    cfg: RunConfig,
    t: TrainConfig,
    best_so_far: float | None,
    class_weight: dict[int, float] | None,
    after_epoch: int = 0,
    run_dir: Path | None = None,
) -> dict[str, list[float]]:
    """Run the second phase on ``model`` in place (a model without a pretrained backbone is left alone), numbering
    its epochs on from ``after_epoch`` in the run directory's history; returns the phase's history per epoch (empty
    when there was none)."""
    names = getattr(model, BACKBONE_LAYERS, ())
    m = cfg.image_model
    if not names or m.fine_tune_epochs == 0 or m.fine_tune_fraction == 0:
        return {}
    before = model.get_weights()  # the first phase's best, restored unless this phase beats it
    opened = unfreeze_top(model, names, m.fine_tune_fraction)
    steps = max(1, math.ceil(len(train) / t.batch_size))
    # The phase's own schedule: a cosine schedule decays over fine_tune_epochs, with no second warm-up.
    rate = (t.learning_rate or 1e-3) * m.fine_tune_lr_factor
    slower = t.model_copy(update={"learning_rate": rate, "epochs": m.fine_tune_epochs, "warmup_epochs": 0.0})
    compile_for_training(model, slower, steps)
    has_val = len(val) > 0
    monitor = monitor_name(t, has_val)
    keep = KeepBest(monitor, maximises(monitor, t.early_stopping_mode), best_so_far)
    early = keras.callbacks.EarlyStopping(
        monitor=monitor, mode=t.early_stopping_mode, patience=t.early_stopping_patience, restore_best_weights=False
    )
    log.info(
        "fine-tuning the top %d layers of the backbone (%.0f%%) at learning rate %g for up to %d epochs",
        opened,
        100 * m.fine_tune_fraction,
        slower.learning_rate,
        m.fine_tune_epochs,
    )
    if not hasattr(model, "_training_state"):  # the first phase's BackupAndRestore deletes it; fit() reads it
        model._training_state = None
    callbacks = [early, keep, ProgressLog(after_epoch + m.fine_tune_epochs)]
    if run_dir is not None:  # the learning curves show both phases
        callbacks.append(keras.callbacks.CSVLogger(str(run_dir / HISTORY), append=True))
    fitted = model.fit(
        training_batches(train, spec, cfg),
        validation_data=eval_batches(val, spec, cfg) if has_val else None,
        initial_epoch=after_epoch,
        epochs=after_epoch + m.fine_tune_epochs,
        class_weight=class_weight,
        callbacks=callbacks,
        verbose=0,
    )
    if keep.weights is not None:
        model.set_weights(keep.weights)
        log.info("fine-tuning improved %s to %.4f", monitor, keep.best)
    else:
        model.set_weights(before)
        log.info("fine-tuning did not beat the frozen backbone's best %s; its weights are kept", monitor)
    return {key: [float(v) for v in values] for key, values in fitted.history.items()}
