"""The retrain flow: ingest -> clean -> split -> label audit -> data report -> check -> (tune) -> train ->
compress -> gate -> register.

Wiring only: the steps are library functions wrapped as Prefect tasks (flows.steps), so the CLI, tests
and schedules all run the same code. Runs on Prefect's temporary local server unless ``PREFECT_API_URL``
points at a real one.

    >>> report = retrain(task="image", data="sample/images", out=".kiln/runs/x", store=".kiln/store")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.steps import (
    audit_step,
    baseline_step,
    check_step,
    compress_step,
    figures_step,
    gate_and_register,
    ingest_step,
    labels_step,
    one_run_per_task,
    publish_markdown,
    report_step,
    retention_step,
    split_step,
    train_step,
)
from flows.tune import tune_for_run
from serving.store import ModelStore
from training.data.dataset import Source, joined
from training.markdown import markdown_with_images
from training.release.registry import production_labels
from training.runs import new_run_dir, start_run
from training.tf_env import is_chief


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
    keep: int | None = None,
) -> dict[str, Any]:
    """Train, compress and register a model for ``task`` from ``data``; returns report.json's content.

    With ``resume``, ``out`` is an interrupted run's directory: its saved configuration is used and
    training continues from its last epoch checkpoint. With ``keep`` (scheduled runs), versions beyond the
    retention rule (ModelStore.retained) are deleted after registering.
    """
    out_dir = Path(out) if out else new_run_dir(task)  # scheduled runs get a new directory each time
    source = Source(data, text_column, label_column, header)
    params = {"task": task, "store": store, "config": config, "epochs": epochs} | source.to_dict()
    params |= {"allow_label_change": allow_label_change, "trials": trials, "keep": keep}
    run = start_run(out_dir, params, resume)  # the run's one config: from the file and flags, or as saved
    cfg = run.config
    model_store = ModelStore(store)

    dataset = ingest_step(task, source, cfg.data)
    train, val, test = split_step(dataset, cfg.data)
    audit, train, val = audit_step(dataset, train, val, cfg.data)
    # The report and quarantine.csv come first: a run that stops on its data still explains why.
    data_report = report_step(dataset, (train, val, test), cfg, out_dir, audit=audit)
    publish_markdown(data_report["markdown"], out_dir, f"data-report-{task}", f"Data report for {data}")
    check_step(dataset, cfg.data.min_examples_per_class)
    label_change = labels_step(production_labels(model_store, task), dataset.label_names, allow_label_change)
    dataset.report.details["label_change"] = label_change
    tuning = None
    if trials:
        cfg, tuning = tune_for_run(train, val, cfg, task, out_dir, trials, run.tuned, resume)
    trained = train_step(train, val, cfg, out_dir, resume)
    if not is_chief():  # multi-worker training: the other workers only helped train
        return {"task": task, "role": "worker", "training": trained.summary()}
    compressed = compress_step(trained, train, val, test, cfg, out_dir / "artifacts")
    baseline_step(joined(train, val), trained.spec, compressed.test_scores, compressed.directory)
    figures = figures_step(
        trained.history, compressed.confusion, trained.spec.labels, out_dir / "plots", compressed.reliability
    )
    create_markdown_artifact(
        markdown=markdown_with_images(f"Training: {task} model", figures),
        key=f"training-{task}",
        description="Learning curves, test confusion matrix and reliability diagram",
    )
    extra = {"source": source.to_dict()} | ({"tuning": tuning} if tuning is not None else {})
    report = gate_and_register(task, cfg, model_store, dataset, test, trained.summary(), compressed, out_dir, extra)
    if keep:
        retention_step(model_store, task, keep)
    return report
