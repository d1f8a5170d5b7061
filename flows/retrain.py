"""The retrain flow: ingest -> clean -> check labels -> split -> data report -> train -> compress -> gate
-> register.

Wiring only: every step is a plain library function wrapped as a Prefect task, so the CLI, tests
and schedules all run the same code. Runs on Prefect's temporary local server unless
``PREFECT_API_URL`` points at a real one.

    >>> report = retrain(task="image", data="sample/images", out=".kiln/runs/x", store=".kiln/store")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from prefect import Task, flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from compression.compress import Compressed, compress_model
from compression.report import write_compression_report
from serving.store import ModelStore, StoreError
from training.data.clean import load_dataset
from training.config import ConfigError, RunConfig, config_to_dict, load_config
from training.data.dataset import DataError, Dataset, check_label_change, check_trainable
from training.data.inspect import write_data_report
from training.data.plots import draw_training, inline_images, markdown_with_images
from training.release.registry import (
    build_manifest,
    build_report,
    evaluate_production,
    gate,
    production_labels,
    register,
    write_report,
)
from training.runs import new_run_dir, read_run_file, resumed_config, write_run_file
from training.data.split import split_dataset
from training.fit.tf_env import is_chief
from training.fit.train import train_model

P = ParamSpec("P")
R = TypeVar("R")


class _NoTracebackForUserErrors(logging.Filter):
    """Data and config errors are the user's to fix and the CLI prints them in one line; Prefect's
    failure logs for them stay one line too, instead of a traceback through Prefect's engine."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], DataError | ConfigError):
            record.exc_info, record.exc_text = None, None
        return True


for _name in ("prefect.task_runs", "prefect.flow_runs"):
    logging.getLogger(_name).addFilter(_NoTracebackForUserErrors())


def _retry_unless_users_fault(task: Any, task_run: Any, state: Any) -> bool:
    """Retry storage hiccups (a network file system, a locked file), not the user's data or config errors."""
    exc = state.result(raise_on_failure=False)
    return not isinstance(exc, DataError | ConfigError | StoreError)


def as_step(fn: Callable[P, R], name: str, retries: int = 0) -> Task[P, R]:
    """A stage function as a Prefect task. Inputs are arrays and models, which Prefect cannot hash
    for caching, so every step re-runs. ``retries``: with backoff (2, 10, 30 s), for steps touching storage."""
    if not retries:
        return task(name=name, cache_policy=NO_CACHE)(fn)
    delays: list[float] = [2.0, 10.0, 30.0][:retries]
    return task(
        name=name,
        cache_policy=NO_CACHE,
        retries=retries,
        retry_delay_seconds=delays,
        retry_condition_fn=_retry_unless_users_fault,
    )(fn)


def one_run_per_task(fn: Callable[P, R]) -> Callable[P, R]:
    """Hold the store's run lock for the task during the whole flow: a second retrain of the same task in the
    same store stops at once with a message (ModelStore.exclusive_run) instead of racing the first."""

    @functools.wraps(fn)
    def locked(*args: P.args, **kwargs: P.kwargs) -> R:
        bound = inspect.signature(fn).bind(*args, **kwargs)
        bound.apply_defaults()
        store = ModelStore(bound.arguments["store"])
        with store.exclusive_run(bound.arguments["task"], fn.__name__):
            return fn(*args, **kwargs)

    return locked


ingest_step = as_step(load_dataset, "ingest-and-clean", retries=2)
check_step = as_step(check_trainable, "check-trainable")
labels_step = as_step(check_label_change, "check-label-change")
split_step = as_step(split_dataset, "split")
report_step = as_step(write_data_report, "data-report")
figures_step = as_step(draw_training, "training-figures")
train_step = as_step(train_model, "train")
compress_step = as_step(compress_model, "compress")
compression_report_step = as_step(write_compression_report, "compression-report")
production_step = as_step(evaluate_production, "evaluate-production", retries=2)
gate_step = as_step(gate, "gate")
register_step = as_step(register, "register", retries=2)


@flow(name="retrain", flow_run_name="retrain-{task}", log_prints=True)
@one_run_per_task
def retrain(
    task: str,
    data: str,
    out: str | None,
    store: str,
    config: str | None = None,
    epochs: int | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    header: bool = True,
    allow_label_change: bool = False,
    resume: bool = False,
    trials: int | None = None,
) -> dict[str, Any]:
    """Train, compress and register a model for ``task`` from ``data``; returns report.json's content.

    With ``resume``, ``out`` is an interrupted run's directory: its saved configuration is used and
    training continues from its last epoch checkpoint.
    """
    out_dir = Path(out) if out else new_run_dir(task)  # scheduled runs get a new directory each time
    tuned = False
    if resume:
        saved = read_run_file(out_dir)
        cfg, tuned = resumed_config(saved), bool(saved["params"].get("tuned"))
    else:
        cfg = load_config(config, {"train": {"epochs": epochs}} if epochs else None)
        params = {"task": task, "data": data, "store": store, "config": config, "epochs": epochs}
        params |= {"text_column": text_column, "label_column": label_column, "header": header}
        write_run_file(out_dir, params | {"allow_label_change": allow_label_change, "trials": trials}, cfg)
    model_store = ModelStore(store)

    dataset = ingest_step(task, Path(data), text_column, label_column, header, cfg.data)
    train, val, test = split_step(dataset, cfg.data)
    # The report and quarantine.csv come first: a run that stops on its data still explains why.
    data_report = report_step(dataset, (train, val, test), cfg, out_dir)
    create_markdown_artifact(
        markdown=inline_images(data_report["markdown"].read_text(encoding="utf-8"), out_dir),
        key=f"data-report-{task}",
        description=f"Data report for {data}",
    )
    check_step(dataset, cfg.data.min_examples_per_class)
    label_change = labels_step(production_labels(model_store, task), dataset.label_names, allow_label_change)
    dataset.report.details["label_change"] = label_change
    tuning = None
    if trials:
        from flows.tune import tune_for_run

        cfg, tuning = tune_for_run(train, val, cfg, task, out_dir, trials, tuned, resume)
    trained = train_step(train, val, cfg, out_dir, resume)
    if not is_chief():  # multi-worker training: the other workers only helped train
        return {"task": task, "role": "worker", "training": trained.summary()}
    compressed = compress_step(trained, train, val, test, cfg, out_dir / "artifacts")
    figures = figures_step(trained.history, compressed.confusion, trained.spec.labels, out_dir / "plots")
    create_markdown_artifact(
        markdown=markdown_with_images(f"Training: {task} model", figures),
        key=f"training-{task}",
        description="Learning curves and test confusion matrix",
    )
    source = {"data": data, "text_column": text_column, "label_column": label_column, "header": header}
    extra = {"source": source} | ({"tuning": tuning} if tuning is not None else {})
    return gate_and_register(task, cfg, model_store, dataset, test, trained.summary(), compressed, out_dir, extra)


def gate_and_register(
    task: str,
    cfg: RunConfig,
    model_store: ModelStore,
    dataset: Dataset,
    test: Dataset,
    training: dict[str, Any],
    compressed: Compressed,
    out_dir: Path,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The end every flow that makes a version shares: compression report (file and artifact), gate against
    production on the test split, manifest, register (and promote if it passed), report.json."""
    report_path = compression_report_step(compressed.variants, compressed.served, compressed.parity, out_dir)
    create_markdown_artifact(
        markdown=inline_images(report_path.read_text(encoding="utf-8"), out_dir),
        key=f"compression-{task}",
        description="Every variant: size, sparsity, validation metrics, latency; the served one marked",
    )
    production = production_step(model_store, task, test)
    decision = gate_step(compressed.served_stats(), production, cfg.gate)
    manifest = build_manifest(
        task=task,
        name=cfg.model_name or f"kiln-{task}",
        data=dataset.report.to_dict(),
        training=training,
        spec=compressed.spec,
        variants=compressed.variants,
        served=compressed.served,
        parity=compressed.parity,
        decision=decision,
        config=config_to_dict(cfg),
        per_class=compressed.per_class,
        test_metrics=compressed.test_metrics,
    )
    version = register_step(model_store, task, compressed.directory, manifest | extra, decision.passed)
    report = build_report(version)
    write_report(out_dir / "report.json", report)
    return report
