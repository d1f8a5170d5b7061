"""Short fine-tuning of a compressed Keras model (pruning, quantization-aware training) on the training split,
with the training run's loss and a fraction of its learning rate.

    >>> fine_tune(model, train, spec, cfg, epochs=2, callbacks=[])  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from serving.preprocess import Spec
from training.config import RunConfig, train_config_for
from training.data.dataset import Dataset
from training.fit.pipeline import training_batches
from training.tf_env import keras


class NotApplicable(ValueError):
    """A fine-tuned variant cannot be made for this model; the message says why (reported, not raised further)."""


def fine_tune(
    model: keras.Model, train: Dataset, spec: Spec, cfg: RunConfig, epochs: int, callbacks: list[Any]
) -> keras.Model:
    """Compile ``model`` with Adam at ``compress.prune_learning_rate_factor`` times the training learning
    rate (small steps keep what training learnt) and fit it for ``epochs`` on ``train``."""
    t = train_config_for(cfg, train.task)
    model.compile(
        optimizer=keras.optimizers.Adam(
            learning_rate=(t.learning_rate or 1e-3) * cfg.compress.prune_learning_rate_factor
        ),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing),
    )
    model.fit(training_batches(train, spec, cfg), epochs=epochs, callbacks=callbacks, verbose=0)
    return model
