"""How the image training defaults were chosen (issue 17 item 4): each training recipe trains the network on Kiln's
own split of each image set's train file (the quality benchmark's fixed train side), and is judged on data that
file holds: Kiln's validation split, where the recipe's early stopping picks its epoch, and Kiln's internal test
split, which neither the fit nor the epoch choice saw. The benchmark's test files are never read. The network is
scored alone (no RBF kernel model beside it, no refit), so the recipes are compared as networks.

Recipes (``RECIPES``): ``previous`` is the image default before this benchmark (plain convolutions, a constant
rate lowered on plateau, early stopping on validation loss, patience 6); ``default`` is what the configuration
says now (training.config.TASK_TRAIN_DEFAULTS, image_model.batch_norm and image_model.standardize); the others change
one part at a time.

    $ .venv/bin/python -m bench.image_recipe                                  # every image set and recipe
    $ .venv/bin/python -m bench.image_recipe --only gtsrb --recipes default
"""

from __future__ import annotations

from typing import Any

from bench.recipes import RecipeBench, main

_PREVIOUS_TRAIN = {
    "lr_schedule": "constant",
    "warmup_epochs": 0.0,
    "label_smoothing": 0.0,
    "early_stopping_monitor": "val_loss",
    "early_stopping_patience": 6,
}
_ON_ACCURACY = {"early_stopping_monitor": "val_accuracy", "early_stopping_patience": 10}
_PLAIN = {"batch_norm": False, "standardize": False}
_COSINE = {"standardize": False}  # the recipe of 2026-12-06 (cosine, label smoothing, stopping on accuracy)
RECIPES: dict[str, dict[str, Any]] = {
    "previous": {"image_model": _PLAIN, "train": _PREVIOUS_TRAIN},
    # one change at a time, then all of them
    "previous, stopping on accuracy": {"image_model": _PLAIN, "train": _PREVIOUS_TRAIN | _ON_ACCURACY},
    "batch norm, stopping on accuracy": {
        "image_model": _PLAIN | {"batch_norm": True},
        "train": _PREVIOUS_TRAIN | _ON_ACCURACY,
    },
    "cosine + smoothing": {"image_model": _COSINE},  # stopping on accuracy
    "cosine + smoothing + batch norm": {"image_model": _COSINE | {"batch_norm": True}},
    "cosine + smoothing + brightness 0.2": {"image_model": _COSINE, "augment": {"brightness": 0.2}},
    "default": {},  # cosine + smoothing + per-image standardisation (image_model.standardize)
    # the default without label smoothing: smoothing caps a network's confidence in a way no temperature undoes
    "default without smoothing": {"train": {"label_smoothing": 0.0}},
}


def _settings(cfg: Any) -> dict[str, Any]:
    return {"batch_norm": cfg.image_model.batch_norm, "standardize": cfg.image_model.standardize}


BENCH = RecipeBench(
    result="image_recipe",
    task="image",
    sets=("sample_digits", "notmnist", "gtsrb", "flowers5"),
    recipes=RECIPES,
    # the network alone, fitted once on the training split: what the recipe itself does
    base={"image_model": {"kernel": False}, "train": {"refit": False}, "data": {"label_issues": "off"}},
    settings=_settings,
)

if __name__ == "__main__":
    main(BENCH, __doc__)
