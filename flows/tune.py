"""The tune flow: ingest -> clean -> split -> N Optuna trials (each a Prefect task run) -> the adopted config.

Wiring only: the search lives in ``training.fit.tune``. Trials train on the training split and are scored
on the validation split; the test split is not touched. ``tune_on_split`` is shared with
``kiln run --trials N``, which then trains the final model with the configuration tuning adopts (the best
trial, or the default when the best trial's gain is within validation noise).

    >>> result = tune(task="text", data="texts.csv", out=".kiln/tune/x", trials=6)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.steps import check_step, ingest_step, split_step
from training.config import RunConfig, load_config
from training.data.dataset import Dataset, Source
from training.fit.tune import (
    StudyPlan,
    TrialOutcome,
    finish_study,
    open_study,
    pending_trials,
    previous_tuning,
    run_trial,
    trial_fitter,
)
from training.runs import read_run_file, write_run_file


@task(name="trial", task_run_name="trial-{number}", cache_policy=NO_CACHE)
def trial_step(number: int, study: Any, space: dict[str, Any], base: RunConfig, fit: Any) -> TrialOutcome:
    """One Optuna trial; ``number`` names the task run in Prefect."""
    return run_trial(study, space, base, fit)


def tune_on_split(
    train: Dataset, val: Dataset, cfg: RunConfig, task_name: str, out: Path, plan: StudyPlan
) -> tuple[RunConfig, dict[str, Any]]:
    """Run the study ``plan`` describes, one Prefect task run per trial; returns the adopted config and the summary."""
    study, space = open_study(cfg, task_name, out, plan)
    fit = trial_fitter(train, val)
    for number in pending_trials(study, plan):
        trial_step(number, study, space, cfg, fit)
    best, result = finish_study(study, cfg, out)
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
    if tuned:
        return cfg, previous_tuning(run_dir)
    best, result = tune_on_split(train, val, cfg, task_name, run_dir / "tuning", StudyPlan(trials, top_up=resume))
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
    plan = StudyPlan(trials, timeout, sampler, storage, study, Path(space) if space else None)
    _, result = tune_on_split(train, val, cfg, task, Path(out), plan)
    return result
