"""The promotion gate: first version, no-worse rule with tolerance, budgets, broken production."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.store import ModelStore
from tests.conftest import TEXT_LABELS
from training.config import GateConfig
from training.data.dataset import DataReport, Dataset
from training.release.gate import Production, evaluate_production, gate

NEW = {"accuracy": 0.90, "macro_f1": 0.88, "bytes": 1000, "latency_ms_p50": 0.5}


def test_first_version_is_promoted() -> None:
    result = gate(NEW, None, GateConfig())
    assert result.passed and "first version" in result.reason


def test_no_worse_within_tolerance_is_promoted_worse_is_not() -> None:
    close = Production("v0001", {"accuracy": 0.905, "macro_f1": 0.885})
    assert gate(NEW, close, GateConfig(metric_tolerance=0.01)).passed
    better = Production("v0001", {"accuracy": 0.95, "macro_f1": 0.88})
    result = gate(NEW, better, GateConfig(metric_tolerance=0.01))
    assert not result.passed and "accuracy 0.9000 < production v0001 0.9500" in result.reason
    assert result.checks["production"]["version"] == "v0001"


def test_budgets_block_promotion() -> None:
    prod = Production("v0001", {"accuracy": 0.5, "macro_f1": 0.5})
    result = gate(NEW, prod, GateConfig(max_model_bytes=500, max_latency_ms=0.1))
    assert not result.passed and "gate.max_model_bytes" in result.reason and "gate.max_latency_ms" in result.reason


def test_unreadable_production_fails_closed() -> None:
    result = gate(NEW, Production("v0003", error="OSError: gone"), GateConfig())
    assert not result.passed and "could not be evaluated" in result.reason


def test_production_is_scored_with_its_own_spec_on_the_new_test_split(onnx_store: Path) -> None:
    texts = ["good film", "bad film", "good good", "film about zebras"]
    test = Dataset("text", texts, ["pos", "neg", "pos", "unseen-label"], texts, DataReport("t"))
    prod = evaluate_production(ModelStore(onnx_store), "text", test)
    assert prod is not None and prod.version == "v0001" and prod.error is None
    assert prod.metrics["examples"] == 4
    assert set(TEXT_LABELS) == {"neg", "pos"}
    assert prod.metrics["accuracy"] <= 0.75  # the unseen label always counts as a miss
    assert evaluate_production(ModelStore(onnx_store.parent / "empty"), "text", test) is None


def _retrain(store: ModelStore, test: Dataset, correct: int, cfg: GateConfig) -> tuple[bool, float]:
    """One "retrain": a model that gets exactly the first ``correct`` test texts right, gated as a run gates it
    (the baseline scored on the same test items) and registered, promoted if it passed."""
    import numpy as np

    from serving.preprocess import TextSpec
    from tests.conftest import onnx_text_model
    from training.release.evaluate import metrics
    from training.release.registry import register

    words = [text for text in test.inputs]
    spec = TextSpec(labels=TEXT_LABELS, vocabulary=("", "[UNK]", *words), max_length=1)
    y = np.array([TEXT_LABELS.index(label) for label in test.labels])
    predicted = np.where(np.arange(len(y)) < correct, y, 1 - y)
    table = np.zeros((len(spec.vocabulary), 2))
    table[2 + np.arange(len(y)), predicted] = 5.0
    onnx = onnx_text_model(TEXT_LABELS, len(spec.vocabulary), 1, table)
    new = metrics(np.eye(2)[predicted], y) | {"bytes": len(onnx), "latency_ms_p50": 0.1}
    decision = gate(new, evaluate_production(store, "text", test, cfg), cfg)
    staging = store.root.parent / f"run-{len(store.versions('text'))}"
    (staging / "variants").mkdir(parents=True)
    (staging / "variants" / "fp32.onnx").write_bytes(onnx)
    variant = {"file": "variants/fp32.onnx", "bytes": len(onnx)}
    manifest = {"spec": spec.to_dict(), "served_variant": "fp32", "variants": {"fp32": variant}}
    manifest |= {"promoted": decision.passed, "gate_checks": decision.checks, "metrics": new}
    register(store, "text", staging, manifest, decision.passed)
    return decision.passed, new["accuracy"]


@pytest.mark.parametrize("window", [1, 10])
def test_the_gate_stops_a_slide_of_small_losses(tmp_path: Path, window: int) -> None:
    words = [f"w{i}" for i in range(200)]
    test = Dataset("text", words, ["pos" if i % 2 else "neg" for i in range(200)], words, DataReport("t"))
    store, cfg = ModelStore(tmp_path / f"store{window}"), GateConfig(metric_tolerance=0.01, baseline_window=window)
    served = []
    for correct in range(180, 160, -2):  # ten retrains, each 1 point worse than the last (0.90, 0.89, ...)
        promoted, accuracy = _retrain(store, test, correct, cfg)
        if promoted:
            served.append(accuracy)
    if window == 1:  # against production alone every small loss passes: ten green gates, 9 points lost
        assert len(served) == 10 and min(served) < 0.82
    else:  # against the best recent version the tolerance is spent once
        assert min(served) >= 0.9 - 0.01 - 1e-9 and len(served) == 2
        report = store.get("text", store.versions("text")[-1]).manifest["gate_checks"]["baseline"]
        assert report["version"] == "v0001" and report["rule"] == "best of the last 10 production versions"


def test_a_pinned_baseline_is_the_one_compared(tmp_path: Path) -> None:
    words = [f"w{i}" for i in range(100)]
    test = Dataset("text", words, ["pos" if i % 2 else "neg" for i in range(100)], words, DataReport("t"))
    store = ModelStore(tmp_path / "store")
    _retrain(store, test, 70, GateConfig())  # v0001: 0.70
    _retrain(store, test, 90, GateConfig())  # v0002: 0.90, promoted
    pinned = GateConfig(baseline="v0001")
    promoted, _ = _retrain(store, test, 75, pinned)  # 0.75 vs pinned v0001 0.70: passes, though production is 0.90
    assert promoted
    checks = store.get("text", "v0003").manifest["gate_checks"]
    assert checks["baseline"]["version"] == "v0001" and "pinned v0001" in checks["baseline"]["rule"]


def test_a_version_split_by_another_rule_is_no_bar(onnx_store: Path) -> None:
    texts = ["good film", "bad film"]
    test = Dataset("text", texts, ["pos", "neg"], texts, DataReport("t"))
    perfect = NEW | {"accuracy": 1.0, "macro_f1": 1.0}
    same = evaluate_production(ModelStore(onnx_store), "text", test)
    assert same is not None and not same.other_split and gate(perfect, same, GateConfig()).passed
    # this run kept recordings whole, production's run did not: production may have trained on these test items
    other = evaluate_production(ModelStore(onnx_store), "text", test, recordings=True)
    assert other is not None and other.other_split and other.metrics == same.metrics
    result = gate(perfect, other, GateConfig())
    assert not result.passed and "split made by another rule" in result.reason and "kiln promote" in result.reason
