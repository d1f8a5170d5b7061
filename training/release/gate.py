"""The promotion gate (DESIGN.md contract 3): the rule alone, apart from registration and reporting.

A new version is promoted only if, on the new run's held-out test split, its served variant is no
worse than the current production version (accuracy and macro-F1 within tolerance) and meets the
size/latency budget. Production is scored with its own preprocessing spec, on the same items.

    >>> result = gate(new_stats, evaluate_production(store, "image", test), cfg.gate)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from serving.runtime import Classifier
from serving.store import ModelStore
from training.config import GateConfig
from training.data.dataset import Dataset
from training.data.features import to_arrays
from training.release.evaluate import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Production:
    """How the current production version scores on the new test split (or why it could not)."""

    version: str
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reason: str
    checks: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_production(store: ModelStore, task: str, test: Dataset) -> Production | None:
    """Score the production version's served variant on ``test``; None when there is none yet."""
    version = store.production(task)
    if version is None:
        return None
    try:
        model = store.get(task, version)
        classifier = Classifier.from_version(model, device="cpu")
        x, y = to_arrays(test, classifier.spec)
        return Production(version=version, metrics=metrics(classifier.predict(x), y))
    except Exception as exc:  # a broken production model must not crash the run: the gate reports it
        log.warning("could not evaluate production %s %s: %s", task, version, exc)
        return Production(version=version, error=f"{type(exc).__name__}: {exc}")


def _budget(new: dict[str, Any], cfg: GateConfig) -> list[str]:
    problems = []
    if cfg.max_model_bytes is not None and new["bytes"] > cfg.max_model_bytes:
        problems.append(f"size {new['bytes']} bytes exceeds gate.max_model_bytes {cfg.max_model_bytes}")
    if cfg.max_latency_ms is not None and new["latency_ms_p50"] > cfg.max_latency_ms:
        problems.append(f"p50 latency {new['latency_ms_p50']} ms exceeds gate.max_latency_ms {cfg.max_latency_ms}")
    return problems


def gate(new: dict[str, Any], production: Production | None, cfg: GateConfig) -> GateResult:
    """Decide promotion for the served variant's stats ``new``."""
    checks: dict[str, Any] = {
        "candidate": {k: new[k] for k in ("accuracy", "macro_f1", "bytes", "latency_ms_p50")},
        "tolerance": cfg.metric_tolerance,
    }
    over_budget = _budget(new, cfg)
    if production is None:
        reason = "first version of this task: promoted"
        if over_budget:
            reason += " (over budget: " + "; ".join(over_budget) + ")"
        return GateResult(True, reason, checks)
    checks["production"] = {"version": production.version, **production.metrics}
    if production.error:
        return GateResult(
            False,
            f"production {production.version} could not be evaluated ({production.error}); "
            "not promoted — fix the store or `kiln rollback`",
            checks,
        )
    worse = [
        f"{m} {new[m]:.4f} < production {production.metrics[m]:.4f} - {cfg.metric_tolerance}"
        for m in ("accuracy", "macro_f1")
        if new[m] < production.metrics[m] - cfg.metric_tolerance
    ]
    if worse or over_budget:
        return GateResult(False, "not promoted: " + "; ".join(worse + over_budget), checks)
    return GateResult(
        True,
        f"promoted: accuracy {new['accuracy']:.4f} vs production {production.version} "
        f"{production.metrics['accuracy']:.4f}, macro-F1 {new['macro_f1']:.4f} vs "
        f"{production.metrics['macro_f1']:.4f} (tolerance {cfg.metric_tolerance})",
        checks,
    )
