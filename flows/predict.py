"""The predict flow: score a folder or table with a stored model, in shards that are Prefect tasks, and write one row
per item to a CSV or JSONL file (``kiln predict``, and ``kiln schedule --predict-out`` for scheduled runs).

Wiring only: items stream from ``training.data.sources``, shards are scored by ``serving.batch`` through the served
variant's ONNX Runtime session (the HTTP service's own path, on the device and threads its settings name), and
the rows are written in input order. At most ``WINDOW_PER_WORKER`` shards per worker are in flight, so memory stays
bounded by the shards, not the input (an image folder is walked one folder at a time, in sorted path order).

Where shards run:
- by default, in this process (Prefect's thread pool, one shard scoring while this thread reads the next shard's
  rows and writes the last one's);
- ``workers=N``: on a local Dask cluster of N processes (prefect-dask's task runner);
- ``dask="tcp://scheduler:8786"``: on an existing Dask cluster. Its workers must see the data and the store at the
  same paths (the data volume in Kubernetes, docs/DEPLOY.md) and need PREFECT_API_URL of a server that outlives
  this process.

    >>> predict(task="text", data="new.csv", out="scores.csv", store=".kiln/store")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections import deque
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from serving.batch import Item, RowWriter, Shard, output_format, score_items
from serving.runtime import Classifier
from serving.settings import Settings
from serving.store import ModelStore, ModelVersion, StoreError
from training.data.sources import iter_items

log = logging.getLogger(__name__)

# Items per Prefect task: about a second of work each, not milliseconds. Texts at 4,096 (1M texts, 2 Dask workers,
# 3 runs each) peaked 1,013-1,016 MiB against 8,192's 1,043-1,047, but took 92-109 s against 86-91 s;
# in this process both took 80-90 s and peaked 605 against 612 MiB. Throughput wins; --shard-items trades.
SHARD_ITEMS = {"image": 1024, "text": 8192}
WINDOW_PER_WORKER = 2  # shards in flight per worker: one scoring, one queued
DASK_CONNECT_SECONDS = 20
PROGRESS_SECONDS = 10.0


@functools.lru_cache(maxsize=2)
def _classifier(
    store: str, task_name: str, version: str, min_confidence: float, threads: int, device: str
) -> Classifier:
    """The served variant of one version, verified like a server verifies it; loaded once per worker process."""
    models = ModelStore(store)
    model = models.get(task_name, version)
    models.verify_for_serving(model)
    classifier = Classifier.from_version(model, device=device, threads=threads)
    classifier.min_confidence = min_confidence
    return classifier


@task(name="score-shard", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def score_shard(
    store: str,
    task_name: str,
    version: str,
    items: Shard,
    top_k: int,
    batch_size: int,
    min_confidence: float = 0.0,
    threads: int = 0,
    device: str = "auto",
    max_pixels: int = Settings.model_fields["max_image_pixels"].default,
) -> list[dict[str, Any]]:
    """One shard's rows, in its items' order."""
    classifier = _classifier(store, task_name, version, min_confidence, threads, device)
    return score_items(classifier, items.items, top_k=top_k, batch_size=batch_size, max_pixels=max_pixels)


def resolve_version(store: ModelStore, task_name: str, version: str | None) -> ModelVersion:
    """The named version, else production; StoreError says what exists."""
    if version is not None:
        return store.get(task_name, version)
    model = store.production_version(task_name)
    if model is None:
        known = ", ".join(store.versions(task_name)) or "none"
        raise StoreError(
            f"no {task_name} model is in production in store {store.root} (versions: {known}); "
            f"give --version or train one with `kiln run --task {task_name}`"
        )
    return model


def task_runner(workers: int = 0, dask: str | None = None) -> TaskRunner[Any]:
    """This process's thread pool, a local Dask cluster of ``workers`` processes, or the cluster at ``dask``."""
    if not dask and workers <= 1:
        return ThreadPoolTaskRunner(max_workers=1)
    from prefect.client.orchestration import get_client
    from prefect_dask import DaskTaskRunner

    if dask:
        return DaskTaskRunner(address=dask)
    # Local workers report their task runs to this run's Prefect server (a temporary one included), not each to a
    # temporary server of its own.
    with get_client(sync_client=True) as client:
        api = str(client.api_url)
    env = {"PREFECT_API_URL": api, "OMP_NUM_THREADS": "1"}
    cluster = {"n_workers": workers, "threads_per_worker": 1, "processes": True, "env": env, "dashboard_address": None}
    return DaskTaskRunner(cluster_kwargs=cluster)


@contextlib.contextmanager
def environment_kept() -> Iterator[None]:
    """This process's environment as it was, after the block: a local Dask cluster's nannies write their
    pre-spawn variables (OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_, ...) into it for good, and a long-lived
    process would hand them to every subprocess it starts later (a training run on one thread)."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        for key, value in saved.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


@contextlib.contextmanager
def dask_log_off(used: bool) -> Iterator[None]:
    """For the block, when it uses Dask: distributed keeps each connection's last 1,000 messages for debugging,
    and a local scheduler its last 1,000 transitions and events (admin.low-level-log-length). Every shard's items
    travel in such a message, so 1,000,000 texts stayed in this process to the end (+260 MB) where the window
    bounds memory. The client and a local cluster read the setting when the runner starts them, in the block."""
    if not used:
        yield
        return
    from dask import config as dask_config

    with dask_config.set({"distributed.admin.low-level-log-length": 0}):
        yield


def dask_workers(address: str) -> int:
    """How many workers the Dask cluster at ``address`` has now (at least 1): the in-flight window follows it.
    Raises OSError when the scheduler does not answer."""
    from distributed import Client

    try:
        with Client(address, timeout=DASK_CONNECT_SECONDS) as client:
            return max(1, len(client.scheduler_info().get("workers", {})))
    except (OSError, TimeoutError) as exc:
        raise OSError(f"no Dask scheduler answers at {address} (--dask): {exc}") from None


def shards(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    while shard := list(islice(items, size)):
        yield shard


@flow(name="predict", flow_run_name="predict-{task}", log_prints=True)
def predict(
    task: str,
    data: str,
    out: str,
    store: str,
    version: str | None = None,
    top_k: int = 3,
    batch_size: int = 64,
    text_column: str | None = None,
    header: bool = True,
    workers: int = 0,
    dask: str | None = None,
    shard_items: int | None = None,
) -> dict[str, Any]:
    """Score every item of ``data`` with ``version`` (default: production) of the ``task`` model into ``out``
    (.csv or .jsonl); returns the summary: items, scored, errors, abstained, counts per label, seconds."""
    output_format(Path(out))
    models = ModelStore(store)
    model = resolve_version(models, task, version)
    models.verify_for_serving(model)
    items = iter_items(task, Path(data), text_column, header)
    settings = Settings()
    parallel = 0 if dask else max(1, workers)
    params = {
        "store": str(models.root),
        "task_name": task,
        "version": model.version,
        "top_k": top_k,
        "batch_size": batch_size,
        "min_confidence": settings.abstain_below(task),
        # KILN_ORT_THREADS as the service reads it; else local workers share the cores between them.
        "threads": settings.ort_threads or (max(1, (os.cpu_count() or 1) // parallel) if parallel > 1 else 0),
        "device": settings.device,
        "max_pixels": settings.max_image_pixels,
    }
    log.info("predict: %s %s (%s) on %s -> %s", task, model.version, model.manifest["served_variant"], data, out)
    window = WINDOW_PER_WORKER * (parallel or dask_workers(str(dask)))
    writer = RowWriter(Path(out))
    started = time.monotonic()
    try:
        with environment_kept(), dask_log_off(bool(dask) or workers > 1), task_runner(workers, dask) as runner:
            _score_in_order(runner, shards(items, shard_items or SHARD_ITEMS[task]), params, window, writer, started)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    summary = writer.summary() | {
        "task": task,
        "version": model.version,
        "variant": model.manifest["served_variant"],
        "seconds": round(time.monotonic() - started, 2),
    }
    _publish(summary)
    return summary


def _score_in_order(
    runner: TaskRunner[Any],
    pending: Iterator[list[Item]],
    params: dict[str, Any],
    window: int,
    writer: RowWriter,
    started: float,
) -> None:
    """Keep ``window`` shards in flight; write each shard's rows as soon as every earlier shard is written."""
    in_flight: deque[Any] = deque()
    told = started
    for shard in pending:
        in_flight.append(runner.submit(score_shard, parameters={**params, "items": Shard(shard)}))
        if len(in_flight) >= window:
            writer.write(in_flight.popleft().result())
        if time.monotonic() - told >= PROGRESS_SECONDS:
            told = time.monotonic()
            _progress(writer, started)
    while in_flight:
        writer.write(in_flight.popleft().result())
    _progress(writer, started)


def _progress(writer: RowWriter, started: float) -> None:
    rate = writer.rows / max(1e-9, time.monotonic() - started)
    log.info("predict: %s items written (%s/s), %s errors", f"{writer.rows:,}", f"{rate:,.0f}", writer.errors)


def _publish(summary: dict[str, Any]) -> None:
    """A markdown artifact of the run: what was scored and how many of each label."""
    lines = [
        f"# Prediction: {summary['task']} {summary['version']} ({summary['variant']})",
        "",
        f"{summary['items']:,} items in {summary['seconds']} s to `{summary['out']}`: {summary['scored']:,} scored, "
        f"{summary['errors']:,} errors, {summary['abstained']:,} abstained.",
        "",
        "| label | items |",
        "|---|---|",
        *[f"| {label} | {count:,} |" for label, count in summary["labels"].items()],
    ]
    create_markdown_artifact("\n".join(lines), key=f"kiln-predict-{summary['task']}", description="kiln predict")
