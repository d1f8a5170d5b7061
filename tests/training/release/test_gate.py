"""The promotion gate: first version, no-worse rule with tolerance, budgets, broken production."""

from __future__ import annotations

from pathlib import Path

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
    assert not result.passed and "accuracy 0.9000 < production 0.9500" in result.reason
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
