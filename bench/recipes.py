"""Recipe benchmarks: how training defaults are chosen without a test file. Each recipe (a set of configuration
overrides) trains on Kiln's own split of each development set's train file (the quality benchmark's fixed train
side) and is judged on data that file holds: Kiln's validation split, where early stopping picks the epoch and
every choice of the run is made, and Kiln's internal test split, which neither the fit nor any choice saw. The
quality benchmark's test files are never read. A run fits once on the training split (``base`` turns the refit
and the label audit off), so the recipes are compared as validation compares them.

bench.image_recipe and bench.text_recipe each define a ``RecipeBench`` (its data sets, recipes and base) and run
``main`` with it; bench.render draws both tables with one function.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, envelope, read_result, utc_now, write_result
from bench.quality import split_source
from bench.splits import prepare_split

# The settings every row records as the task resolved them (training.config.train_config_for).
TRAIN_SETTINGS = (
    "lr_schedule",
    "warmup_epochs",
    "label_smoothing",
    "early_stopping_monitor",
    "early_stopping_patience",
)


@dataclass(frozen=True)
class RecipeBench:
    result: str  # the result file's name under docs/bench/ and its benchmark name
    task: str  # image or text
    sets: tuple[str, ...]
    recipes: dict[str, dict[str, Any]]  # name -> configuration overrides on top of base; "default" is {}
    base: dict[str, Any]  # what every recipe starts from
    settings: Callable[[Any], dict[str, Any]]  # the model settings a row records, from the RunConfig


def measure(bench: RecipeBench, name: str, recipe: str, workdir: Path) -> dict[str, Any]:
    """Train ``recipe`` on Kiln's split of data set ``name``'s train side; its scores on validation and test."""
    from training import memory
    from training.config import RunConfig, merge_config
    from training.data.clean import load_source
    from training.data.dataset import Source
    from training.data.split import split_dataset
    from training.fit.train import train_model
    from training.fit.tune import shipped_probabilities
    from training.models.calibration import expected_calibration_error
    from training.tf_env import keras

    memory.tune_allocator()
    keras.backend.clear_session()
    split = prepare_split(split_source(name, workdir), workdir / "splits")
    cfg = RunConfig().with_overrides(merge_config(bench.base, bench.recipes[recipe]))
    # read as `kiln run` reads the file the quality benchmark hands it: columns found by their names
    dataset = load_source(bench.task, Source(str(split.train)), cfg.data)
    train, val, test = split_dataset(dataset, cfg.data)
    trained = train_model(train, val, cfg)
    t = trained.config  # the recipe as the task resolved it
    curve = trained.history.get("val_accuracy", [])
    recordings = dataset.report.details.get("recordings")
    scores = {}
    for split_name, items in (("val", val), ("test", test)):
        probabilities, y, _ = shipped_probabilities(trained, items, cfg)
        right = probabilities.argmax(axis=1) == y
        scores[f"{split_name}_accuracy"] = round(float(right.mean()) if len(y) else 0.0, 4)
        scores[f"{split_name}_ece"] = round(expected_calibration_error(probabilities, y), 4)
    return {
        "data_set": name,
        "recipe": recipe,
        "settings": bench.settings(cfg) | {k: getattr(t, k) for k in TRAIN_SETTINGS},
        "items": {"train": len(train), "validation": len(val), "test": len(test)},
        "recordings": recordings["recordings"] if recordings else None,
        "model": trained.model.name,
        "parameters": int(trained.model.count_params()),
        "epochs_run": len(curve),
        "train_seconds": round(trained.seconds, 1),
        **scores,  # accuracy and ECE of the model as it ships (calibrated on validation)
        "val_accuracy_curve": [round(float(v), 4) for v in curve],
    }


def main(bench: RecipeBench, description: str | None) -> None:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=bench.sets, default=list(bench.sets))
    parser.add_argument("--recipes", nargs="+", choices=list(bench.recipes), default=list(bench.recipes))
    parser.add_argument("--workdir", type=Path, default=Path(".kiln/bench-quality"))
    parser.add_argument("--out", type=Path, default=BENCH_DIR / f"{bench.result}.json")
    args = parser.parse_args()
    previous = read_result(args.out) or {}
    # rows of recipes or data sets no longer defined here are dropped: their settings are not described any more
    rows = {(r["data_set"], r["recipe"]): r for r in previous.get("rows", []) if r["recipe"] in bench.recipes}
    rows = {key: row for key, row in rows.items() if row["data_set"] in bench.sets}
    written = args.out
    parameters = {"task": bench.task, "recipes": bench.recipes, "base": bench.base}
    for name in args.only:
        for recipe in args.recipes:
            print(f"{name}: recipe {recipe} ...", flush=True)
            row = measure(bench, name, recipe, args.workdir) | {"measured": utc_now()}
            print(json.dumps({k: v for k, v in row.items() if k != "val_accuracy_curve"}), flush=True)
            rows[(name, recipe)] = row
            order = list(bench.recipes)
            ordered = sorted(rows.values(), key=lambda r: (bench.sets.index(r["data_set"]), order.index(r["recipe"])))
            written = write_result(args.out, envelope(bench.result, parameters, rows=ordered))
    from bench.render import after_benchmark

    after_benchmark(written)
