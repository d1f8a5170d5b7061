"""The stage functions as Prefect tasks, and the end every version-making flow shares (gate and register).

Wiring only: each step is a plain library function, so the CLI, tests and schedules run the same code. The
retrain, tune and compress flows import their steps from here.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from prefect import Task, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from compression.compress import Compressed, compress_model
from compression.report import write_compression_report
from serving.store import ModelStore, StoreError
from training import memory
from training.config import ConfigError, RunConfig, config_to_dict
from training.data.clean import load_source
from training.data.dataset import DataError, Dataset, check_label_change, check_trainable
from training.data.inspect import write_data_report
from training.data.label_audit import audit_and_exclude
from training.data.split import split_dataset
from training.fit.train import train_model
from training.markdown import inline_images
from training.release.drift import write_baseline
from training.release.figures import draw_training
from training.release.gate import evaluate_production, gate, split_by_recordings
from training.release.registry import apply_retention, build_manifest, register
from training.release.report import build_report, write_report
from training.tf_env import is_chief

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
    """A stage function as a Prefect task, its peak memory recorded under ``name`` (training.memory). Inputs are
    arrays and models, which Prefect cannot hash for caching, so every step re-runs. ``retries``: with backoff
    (2, 10, 30 s), for steps touching storage."""

    @functools.wraps(fn)
    def metered_fn(*args: P.args, **kwargs: P.kwargs) -> R:
        with memory.metered(name):
            return fn(*args, **kwargs)

    if not retries:
        return task(name=name, cache_policy=NO_CACHE)(metered_fn)
    delays: list[float] = [2.0, 10.0, 30.0][:retries]
    return task(
        name=name,
        cache_policy=NO_CACHE,
        retries=retries,
        retry_delay_seconds=delays,
        retry_condition_fn=_retry_unless_users_fault,
    )(metered_fn)


def one_run_per_task(fn: Callable[P, R]) -> Callable[P, R]:
    """Hold the store's run lock for the task during the whole flow: a second retrain of the same task in the
    same store stops at once with a message (ModelStore.exclusive_run) instead of racing the first. Only the chief
    of a multi-worker run takes it: the other workers write nothing to the store. Peak memory per stage
    (training.memory) counts from the flow's start."""

    @functools.wraps(fn)
    def locked(*args: P.args, **kwargs: P.kwargs) -> R:
        bound = inspect.signature(fn).bind(*args, **kwargs)
        bound.apply_defaults()
        store = ModelStore(bound.arguments["store"])
        lock = store.exclusive_run(bound.arguments["task"], fn.__name__) if is_chief() else contextlib.nullcontext()
        with lock:
            memory.reset()
            memory.tune_allocator()
            return fn(*args, **kwargs)

    return locked


ingest_step = as_step(load_source, "ingest-and-clean", retries=2)
check_step = as_step(check_trainable, "check-trainable")
labels_step = as_step(check_label_change, "check-label-change")
split_step = as_step(split_dataset, "split")
audit_step = as_step(audit_and_exclude, "label-audit")
report_step = as_step(write_data_report, "data-report")
figures_step = as_step(draw_training, "training-figures")
baseline_step = as_step(write_baseline, "drift-baseline")
train_step = as_step(train_model, "train")
compress_step = as_step(compress_model, "compress")
compression_report_step = as_step(write_compression_report, "compression-report")
production_step = as_step(evaluate_production, "evaluate-production", retries=2)
gate_step = as_step(gate, "gate")
register_step = as_step(register, "register", retries=2)
retention_step = as_step(apply_retention, "retention", retries=2)


def publish_markdown(path: Path, base: Path, key: str, description: str) -> None:
    """A Markdown report file as a Prefect artifact, its relative PNG links inlined."""
    markdown = inline_images(path.read_text(encoding="utf-8"), base)
    create_markdown_artifact(markdown=markdown, key=key, description=description)


def gate_and_register(
    task_name: str,
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
    publish_markdown(
        report_path,
        out_dir,
        f"compression-{task_name}",
        "Every variant: size, sparsity, validation metrics, latency; the served one marked",
    )
    production = production_step(model_store, task_name, test, cfg.gate, split_by_recordings(dataset.report.details))
    decision = gate_step(compressed.served_stats(), production, cfg.gate)
    manifest = build_manifest(
        task=task_name,
        name=cfg.model_name or f"kiln-{task_name}",
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
    resources = {"resources": memory.resources()}  # every stage up to the gate; register's own is small
    registration = uuid.uuid4().hex  # the same on every retry of the step: a retry never stores twice
    version = register_step(
        model_store, task_name, compressed.directory, manifest | extra | resources, decision.passed, registration
    )
    report = build_report(version)
    write_report(out_dir / "report.json", report)
    return report
