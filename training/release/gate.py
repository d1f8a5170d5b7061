"""The promotion gate (DESIGN.md contract 3): the rule alone, apart from registration and reporting.

A new version is promoted only if, on the new run's held-out test split, its served variant is no
worse than the baseline (accuracy and macro-F1 within tolerance) and meets the size/latency budget. The
baseline is a pinned version (gate.baseline) or the best of the last gate.baseline_window production versions,
so the tolerance cannot be spent again by every retrain. Each is scored with its own preprocessing spec, on the
same items.

    >>> result = gate(new_stats, evaluate_production(store, "image", test, cfg.gate), cfg.gate)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
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
    # What the candidate is compared with: the best recent production version or the pinned one (None: this one).
    baseline: Production | None = None
    baseline_rule: str = "production"
    # Its data was split by another rule (recordings kept whole or not): it may have learnt from items of this
    # test split, so its score is no bar for the candidate.
    other_split: bool = False


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reason: str
    checks: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_by_recordings(data: dict[str, Any]) -> bool:
    """Whether a data report (a run's, or a version's manifest ``data``) says recordings were kept whole."""
    return bool(data.get("recordings"))


def score_version(store: ModelStore, task: str, version: str, test: Dataset, recordings: bool = False) -> Production:
    """A stored version's served variant on ``test``, with its own spec (or why it could not be scored).
    ``recordings``: whether this run's split kept recordings whole, to compare with the version's own split."""
    try:
        model = store.get(task, version)
        classifier = Classifier.from_version(model, device="cpu")
        x, y = to_arrays(test, classifier.spec)
        other = split_by_recordings(model.manifest.get("data") or {}) != recordings
        return Production(version=version, metrics=metrics(classifier.predict_all(x), y), other_split=other)
    except Exception as exc:  # a broken model must not crash the run: the gate reports it
        log.warning("could not evaluate %s %s: %s", task, version, exc)
        return Production(version=version, error=f"{type(exc).__name__}: {exc}")


def evaluate_production(
    store: ModelStore, task: str, test: Dataset, cfg: GateConfig | None = None, recordings: bool = False
) -> Production | None:
    """Score the production version's served variant on ``test`` and choose the baseline (``cfg``: the pinned
    version, else the best by accuracy, then macro-F1, of the last baseline_window production versions that still
    exist, score and were split by the same rule as this run: ``recordings``, whether it kept recordings whole);
    None when there is no production version yet."""
    cfg = cfg or GateConfig()
    version = store.production(task)
    if version is None:
        return None
    production = score_version(store, task, version, test, recordings)
    if production.error:
        return production
    if cfg.baseline:
        rule = f"pinned {cfg.baseline} (gate.baseline)"
        pinned = production if cfg.baseline == version else score_version(store, task, cfg.baseline, test, recordings)
        recent = [pinned]
    else:
        rule = f"best of the last {cfg.baseline_window} production versions"
        stored = set(store.versions(task))
        window = [v for v in dict.fromkeys(reversed(store.history(task))) if v in stored][: cfg.baseline_window]
        recent = [production] + [score_version(store, task, v, test, recordings) for v in window if v != version]
        recent = [p for p in recent if not p.error and not p.other_split] or [production]
    best = max(recent, key=lambda p: (p.metrics.get("accuracy", -1.0), p.metrics.get("macro_f1", -1.0)))
    return replace(production, baseline=best, baseline_rule=rule)


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
    base = production.baseline or production
    if base.error:
        return GateResult(False, f"baseline {base.version} could not be evaluated ({base.error}); not promoted", checks)
    checks["baseline"] = {"version": base.version, "rule": production.baseline_rule, **base.metrics}
    if base.other_split:
        return GateResult(
            False,
            f"not promoted: {base.version} was trained on a split made by another rule (data.group_recordings: "
            "frames of one recording kept whole in one run and not in the other), so it may have learnt from this "
            "test split's items and its score is no bar; check this version's test metrics in report.json and "
            "promote it with `kiln promote` if it should serve",
            checks,
        )
    name = "production" if base.version == production.version else "baseline"
    worse = [
        f"{m} {new[m]:.4f} < {name} {base.version} {base.metrics[m]:.4f} - {cfg.metric_tolerance}"
        for m in ("accuracy", "macro_f1")
        if new[m] < base.metrics[m] - cfg.metric_tolerance
    ]
    if worse or over_budget:
        return GateResult(False, "not promoted: " + "; ".join(worse + over_budget), checks)
    return GateResult(
        True,
        f"promoted: accuracy {new['accuracy']:.4f} vs {name} {base.version} {base.metrics['accuracy']:.4f}, "
        f"macro-F1 {new['macro_f1']:.4f} vs {base.metrics['macro_f1']:.4f} (tolerance {cfg.metric_tolerance}; "
        f"baseline: {production.baseline_rule})",
        checks,
    )
