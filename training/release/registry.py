"""Registration (DESIGN.md contract 2): the manifest of a new version and storing it, with the production
pointer moved by compare-and-swap when the gate passed it.

    >>> version = register(store, "image", run / "artifacts", manifest, promote=decision.passed)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from serving.store import ModelStore, ModelVersion
from training.release.gate import GateResult

log = logging.getLogger(__name__)


def production_labels(store: ModelStore, task: str) -> tuple[str, ...] | None:
    """The label names of the production version of ``task``, or None when there is none."""
    model = store.production_version(task)
    return tuple(model.manifest["spec"]["labels"]) if model is not None else None


def register(
    store: ModelStore,
    task: str,
    artifacts: Path,
    manifest: dict[str, Any],
    promote: bool,
    registration: str | None = None,
) -> ModelVersion:
    """Store the artefacts as a new immutable version and move the production pointer if ``promote``.
    ``registration``: the same id on every retry, so a retry stores nothing twice (ModelStore.register)."""
    # Compare-and-swap: promote only over the production version the gate compared against.
    expected = manifest.get("gate_checks", {}).get("production", {}).get("version")
    version = store.register(
        task, artifacts, manifest, promote=promote, expected_production=expected, registration=registration
    )
    if version.manifest.get("promoted"):
        log.info("registered %s %s and promoted it to production", task, version.version)
    elif promote:
        log.warning("registered %s %s: %s", task, version.version, version.manifest["gate"])
    else:
        log.info("registered %s %s; production stays %s", task, version.version, store.production(task))
    return version


# The served variant's calibration on the test split (compression.compress): ECE with the graph's calibration
# map, without it, the map's temperature and its family (training.models.calibration.LINKS).
CALIBRATION_KEYS = ("ece", "ece_uncalibrated", "temperature", "link")


def build_manifest(
    task: str,
    name: str,
    data: dict[str, Any],
    training: dict[str, Any],
    spec: dict[str, Any],
    variants: dict[str, dict[str, Any]],
    served: str,
    parity: dict[str, Any],
    decision: GateResult,
    config: dict[str, Any],
    per_class: dict[str, dict[str, Any]] | None = None,
    test_metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything a later stage needs about a version; report.json is this plus the version name."""
    return {
        "task": task,
        "name": name,
        "promoted": decision.passed,
        "gate": decision.reason,
        "gate_checks": decision.checks,
        "served_variant": served,
        # The served variant on the test split (variants hold the validation numbers that chose it).
        "metrics": {k: (test_metrics or variants[served])[k] for k in ("accuracy", "macro_f1")}
        | {"examples": (test_metrics or variants[served]).get("examples"), "split": "test" if test_metrics else None}
        | {k: test_metrics[k] for k in CALIBRATION_KEYS if test_metrics and k in test_metrics}
        | {"per_class": per_class or {}},
        "variants": variants,
        "parity": parity,
        "data": data,
        "training": training,
        "spec": spec,
        "config": config,
    }


def apply_retention(store: ModelStore, task: str, keep: int) -> list[str]:
    """A scheduled run's clean-up after registering: ModelStore.collect_garbage with ``keep``."""
    removed = store.collect_garbage(task, keep)
    if removed:
        log.info("retention (keep %d): deleted %s %s", keep, task, ", ".join(removed))
    return removed
