"""The compress flow behind ``kiln compress``: re-run compression on a stored version's trained Keras model
(for example with another sparsity, calibration or objective), then gate and register the result as a new
version whose manifest records ``derived_from``. No training: the same data and split (stable seed)
give pruning and QAT their fine-tuning set and the same validation and test splits.

    >>> report = compress_version("image", "v0003", ".kiln/store", ".kiln/runs/c1")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from compression.stored import stored_config, stored_model, stored_source
from flows.steps import (
    as_step,
    baseline_step,
    compress_step,
    gate_and_register,
    ingest_step,
    one_run_per_task,
    split_step,
)
from serving.store import ModelStore
from training.data.dataset import joined

load_model_step = as_step(stored_model, "load-stored-model")


@flow(name="compress", flow_run_name="compress-{task}-{version}", log_prints=True)
@one_run_per_task
def compress_version(
    task: str, version: str, store: str, out: str, config: str | None = None, data: str | None = None
) -> dict[str, Any]:
    """Compress ``version`` of ``task`` again under ``config`` (laid over its stored configuration); returns
    report.json's content for the new version."""
    model_store = ModelStore(store)
    source_version = model_store.get(task, version)
    cfg = stored_config(source_version, Path(config) if config else None)
    source = stored_source(source_version, Path(data) if data else None)
    dataset = ingest_step(task, source, cfg.data)
    train, val, test = split_step(dataset, cfg.data)
    trained = load_model_step(source_version, train, cfg)
    out_dir = Path(out)
    compressed = compress_step(trained, train, val, test, cfg, out_dir / "artifacts")
    baseline_step(joined(train, val), trained.spec, compressed.test_scores, compressed.directory)
    training = source_version.manifest.get("training", {})
    extra = {"source": source.to_dict(), "derived_from": {"version": version, "task": task}}
    return gate_and_register(task, cfg, model_store, dataset, test, training, compressed, out_dir, extra)
