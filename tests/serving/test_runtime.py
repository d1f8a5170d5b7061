"""ONNX Runtime provider choice and the Classifier wrapper (no GPU needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import serving.runtime as runtime
from serving.store import ModelStore
from tests.conftest import IMAGE_LABELS, png_bytes


def test_auto_uses_cpu_when_the_driver_reports_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "gpu_present", lambda: False)
    assert runtime.choose_providers("auto") == ["CPUExecutionProvider"]
    assert runtime.choose_providers("cpu") == ["CPUExecutionProvider"]


def test_auto_prefers_cuda_with_cpu_fallback_when_a_gpu_is_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "gpu_present", lambda: True)
    monkeypatch.setattr(
        runtime.ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert runtime.choose_providers("auto") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert runtime.choose_providers("cpu") == ["CPUExecutionProvider"]


def test_cuda_request_without_provider_falls_back_with_warning(monkeypatch, caplog) -> None:
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert runtime.choose_providers("cuda") == ["CPUExecutionProvider"]
    assert "using CPU" in caplog.text


def test_gpu_probe_answers_on_this_machine() -> None:
    assert isinstance(runtime.gpu_present(), bool)


def test_classifier_from_store_batches_and_decodes(onnx_store: Path) -> None:
    model = ModelStore(onnx_store).production_version("image")
    assert model is not None
    clf = runtime.Classifier.from_version(model, device="cpu")
    batch = clf.prepare_images([png_bytes(), png_bytes((3, 50), "L")])
    assert batch.shape == (2, 8, 8, 1)
    results = clf.classify(batch)
    assert len(results) == 2 and all(r["label"] in IMAGE_LABELS for r in results)
    assert np.isclose(sum(results[0]["scores"].values()), 1.0, atol=1e-4)
    latency = runtime.measure_latency(clf, batch[:1], runs=5)
    assert 0 < latency["p50"] <= latency["p95"]
