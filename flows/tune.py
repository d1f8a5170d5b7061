"""The tune flow: ingest -> clean -> split -> N Optuna trials (each a Prefect task run) -> best config.

Wiring only: the search lives in ``training.fit.tune``. Trials train on the training split and are scored
on the validation split; the test split is not touched. ``tune_on_split`` is shared with
``kiln run --trials N``, which then trains the final model with the best configuration.

    >>> result = tune(task="text", data="texts.csv", out=".kiln/tune/x", trials=6)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.steps import check_step, ingest_step, split_step
from training.config import RunConfig, config_to_dict, load_config
from training.data.dataset import Dataset, Source
from training.fit.tune import (
    TrialOutcome,
    best_config,
    enqueue_default,
    load_space,
    make_study,
    run_trial,
    summary,
    trial_fitter,
    write_outputs,
)
from training.runs import read_run_file, write_run_file


@task(name="trial", task_run_name="trial-{number}", cache_policy=NO_CACHE)
def trial_step(number: int, study: Any, space: dict[str, Any], base: dict[str, Any], fit: Any) -> TrialOutcome:
    """One Optuna trial; ``number`` names the task run in Prefect."""
    return run_trial(study, space, base, fit)


def tune_on_split(
    train: Dataset,
    val: Dataset,
    cfg: RunConfig,
    task_name: str,
    out: Path,
    trials: int,
    timeout: float | None = None,
    sampler: str = "tpe",
    storage: str | None = None,
    study_name: str | None = None,
    space_path: Path | None = None,
    top_up: bool = False,
) -> tuple[RunConfig, dict[str, Any]]:
    """Run up to ``trials`` trials (or until ``timeout`` seconds); returns the best config and the summary.

    The default storage is a SQLite file in ``out``: a new study unless ``top_up``, which continues an
    interrupted one until it holds ``trials`` finished trials (``kiln run --resume`` during tuning).
    """
    space = load_space(space_path, task_name)
    out.mkdir(parents=True, exist_ok=True)
    local = out / "study.db"
    if storage is None and not top_up:
        local.unlink(missing_ok=True)
    study = make_study(
        study_name or f"kiln-{task_name}",
        storage or f"sqlite:///{local.resolve()}",
        sampler,
        space,
        cfg.train.seed if storage is None else None,  # processes sharing a study must sample differently
    )
    enqueue_default(study, space, cfg, task_name)
    base = config_to_dict(cfg)
    fit = trial_fitter(train, val)
    started = time.monotonic()
    done = sum(1 for t in study.trials if t.state.is_finished()) if top_up else 0
    for number in range(done, trials):
        if timeout is not None and time.monotonic() - started > timeout:
            break
        trial_step(number, study, space, base, fit)
    best = best_config(study, base)
    result = summary(study) | {"files": {k: str(v) for k, v in write_outputs(study, base, out).items()}}
    (out / "tuning.json").write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    create_markdown_artifact(
        markdown=Path(result["files"]["markdown"]).read_text(encoding="utf-8"),
        key=f"tuning-{task_name}",
        description=f"Optuna trials of study {study.study_name}",
    )
    return best, result


def tune_for_run(
    train: Dataset,
    val: Dataset,
    cfg: RunConfig,
    task_name: str,
    run_dir: Path,
    trials: int,
    tuned: bool,
    resume: bool,
) -> tuple[RunConfig, dict[str, Any] | None]:
    """`kiln run --trials N`: tune into RUN/tuning and save the tuned config in the run file, so --resume
    continues with it. A resumed run that was already tuned keeps its config and summary; one killed
    while tuning continues its study."""
    summary_file = run_dir / "tuning" / "tuning.json"
    if tuned:
        return cfg, json.loads(summary_file.read_text(encoding="utf-8")) if summary_file.exists() else None
    best, result = tune_on_split(train, val, cfg, task_name, run_dir / "tuning", trials, top_up=resume)
    write_run_file(run_dir, read_run_file(run_dir)["params"] | {"tuned": True}, best)
    return best, result


@flow(name="tune", flow_run_name="tune-{task}", log_prints=True)
def tune(
    task: str,
    data: str,
    out: str,
    trials: int = 20,
    timeout: float | None = None,
    sampler: str = "tpe",
    storage: str | None = None,
    study: str | None = None,
    space: str | None = None,
    config: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    header: bool = True,
) -> dict[str, Any]:
    """Search hyperparameters for ``task`` on ``data``; returns the tuning summary (also tuning.json)."""
    cfg = load_config(config)
    dataset = ingest_step(task, Source(data, text_column, label_column, header), cfg.data)
    train, val, _ = split_step(dataset, cfg.data)
    check_step(dataset, cfg.data.min_examples_per_class)
    _, result = tune_on_split(
        train, val, cfg, task, Path(out), trials, timeout, sampler, storage, study, Path(space) if space else None
    )
    return result
