"""How the image training defaults were chosen (issue 17 item 4): each training recipe trains the network on Kiln's
own split of each image set's train file (the quality benchmark's fixed train side), and is judged on data that
file holds: Kiln's validation split, where the recipe's early stopping picks its epoch, and Kiln's internal test
split, which neither the fit nor the epoch choice saw. The benchmark's test files are never read. The network is
scored alone (no RBF kernel model beside it, no refit), so the recipes are compared as networks.

Recipes (``RECIPES``): ``previous`` is the image default before this benchmark (plain convolutions, a constant
rate lowered on plateau, early stopping on validation loss, patience 6); ``default`` is what the configuration
says now (training.config.TASK_TRAIN_DEFAULTS and image_model.batch_norm); the others change one part at a time.

    $ .venv/bin/python -m bench.image_recipe                                  # every image set and recipe
    $ .venv/bin/python -m bench.image_recipe --only gtsrb --recipes default
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, envelope, read_result, utc_now, write_result
from bench.quality import split_source
from bench.splits import prepare_split

RESULT = "image_recipe"
SETS = ("sample_digits", "notmnist", "gtsrb", "flowers5")
_PREVIOUS_TRAIN = {
    "lr_schedule": "constant",
    "warmup_epochs": 0.0,
    "label_smoothing": 0.0,
    "early_stopping_monitor": "val_loss",
    "early_stopping_patience": 6,
}
_ON_ACCURACY = {"early_stopping_monitor": "val_accuracy", "early_stopping_patience": 10}
RECIPES: dict[str, dict[str, Any]] = {
    "previous": {"image_model": {"batch_norm": False}, "train": _PREVIOUS_TRAIN},
    # one change at a time, then all of them
    "previous, stopping on accuracy": {"image_model": {"batch_norm": False}, "train": _PREVIOUS_TRAIN | _ON_ACCURACY},
    "batch norm, stopping on accuracy": {"image_model": {"batch_norm": True}, "train": _PREVIOUS_TRAIN | _ON_ACCURACY},
    "default": {},  # cosine + label smoothing, stopping on accuracy
    "default + batch norm": {"image_model": {"batch_norm": True}},
    "default + brightness 0.2": {"augment": {"brightness": 0.2}},
}
# The train settings a recipe result records (as the image task resolves them), beside image_model.batch_norm.
RECIPE_SETTINGS = (
    "lr_schedule",
    "warmup_epochs",
    "label_smoothing",
    "early_stopping_monitor",
    "early_stopping_patience",
)
# The network alone, fitted once on the training split: what the recipe itself does.
NETWORK_ONLY = {"image_model": {"kernel": False}, "train": {"refit": False}, "data": {"label_issues": "off"}}


def measure(name: str, recipe: str, workdir: Path) -> dict[str, Any]:
    """Train ``recipe`` on Kiln's split of data set ``name``'s train side; its scores on validation and test."""
    from training import memory
    from training.config import RunConfig, merge_config
    from training.data.clean import load_source
    from training.data.dataset import Source
    from training.data.split import split_dataset
    from training.fit.train import train_model
    from training.fit.tune import shipped_scores
    from training.tf_env import keras

    memory.tune_allocator()
    keras.backend.clear_session()
    split = prepare_split(split_source(name, workdir), workdir / "splits")
    cfg = RunConfig().with_overrides(merge_config(NETWORK_ONLY, RECIPES[recipe]))
    dataset = load_source("image", Source(str(split.train), None, None, True), cfg.data)
    train, val, test = split_dataset(dataset, cfg.data)
    trained = train_model(train, val, cfg)
    t = trained.config  # the recipe as the task resolved it
    curve = trained.history.get("val_accuracy", [])
    recordings = dataset.report.details.get("recordings")
    return {
        "data_set": name,
        "recipe": recipe,
        "settings": {
            "batch_norm": cfg.image_model.batch_norm,
            **{k: getattr(t, k) for k in RECIPE_SETTINGS},
        },
        "items": {"train": len(train), "validation": len(val), "test": len(test)},
        "recordings": recordings["recordings"] if recordings else None,
        "epochs_run": len(curve),
        "train_seconds": round(trained.seconds, 1),
        "val_accuracy": round(shipped_scores(trained, val)[1], 4),
        "test_accuracy": round(shipped_scores(trained, test)[1], 4),
        "val_accuracy_curve": [round(float(v), 4) for v in curve],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--workdir", type=Path, default=Path(".kiln/bench-quality"))
    parser.add_argument("--out", type=Path, default=BENCH_DIR / f"{RESULT}.json")
    args = parser.parse_args()
    previous = read_result(args.out) or {}
    # rows of recipes or data sets no longer defined here are dropped: their settings are not described any more
    rows = {(r["data_set"], r["recipe"]): r for r in previous.get("rows", []) if r["recipe"] in RECIPES}
    rows = {key: row for key, row in rows.items() if row["data_set"] in SETS}
    written = args.out
    for name in args.only:
        for recipe in args.recipes:
            print(f"{name}: recipe {recipe} ...", flush=True)
            row = measure(name, recipe, args.workdir) | {"measured": utc_now()}
            print(json.dumps({k: v for k, v in row.items() if k != "val_accuracy_curve"}), flush=True)
            rows[(name, recipe)] = row
            ordered = sorted(rows.values(), key=lambda r: (SETS.index(r["data_set"]), list(RECIPES).index(r["recipe"])))
            written = write_result(
                args.out, envelope(RESULT, {"recipes": RECIPES, "network_only": NETWORK_ONLY}, rows=ordered)
            )
    from bench.render import after_benchmark

    after_benchmark(written)


if __name__ == "__main__":
    main()
