"""ONNX Runtime provider choice and the Classifier wrapper (no GPU needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


class FakeDriver:
    """Stands in for libcuda.so.1: the two driver calls gpu_present() makes, with chosen answers."""

    def __init__(self, devices: int, init_status: int = 0, count_status: int = 0):
        self.devices, self.init_status, self.count_status = devices, init_status, count_status
        self.calls: list[str] = []

    def cuInit(self, flags: int) -> int:  # the driver's own names
        self.calls.append(f"cuInit({flags})")
        return self.init_status

    def cuDeviceGetCount(self, count_ref: Any) -> int:
        self.calls.append("cuDeviceGetCount")
        if self.count_status == 0:
            count_ref._obj.value = self.devices  # what the driver writes through the pointer
        return self.count_status


class Driver:
    """Installs a FakeDriver (or none: the library is missing) behind ctypes.CDLL, and clears the probe's
    cache so the next gpu_present() asks it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.monkeypatch = monkeypatch
        self.opened: list[str] = []

    def install(self, fake: FakeDriver | None) -> None:
        def cdll(name: str) -> FakeDriver:
            self.opened.append(name)
            if fake is None:
                raise OSError(f"{name}: cannot open shared object file: No such file or directory")
            return fake

        self.monkeypatch.setattr(runtime.ctypes, "CDLL", cdll)
        runtime.gpu_present.cache_clear()


@pytest.fixture()
def driver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Driver]:
    """Fake the NVIDIA driver at gpu_present()'s boundary (ctypes.CDLL("libcuda.so.1")); the cache is cleared
    afterwards too, so no fake answer leaks into other tests."""
    yield Driver(monkeypatch)
    runtime.gpu_present.cache_clear()


BOTH = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_gpu_probe_is_false_without_the_driver_library(driver: Driver) -> None:
    driver.install(None)
    assert runtime.gpu_present() is False
    assert driver.opened == ["libcuda.so.1"]


@pytest.mark.parametrize(
    "fake",
    [FakeDriver(devices=0), FakeDriver(devices=2, init_status=100), FakeDriver(devices=2, count_status=3)],
    ids=["no-devices", "cuInit-fails", "count-fails"],
)
def test_gpu_probe_is_false_when_the_driver_reports_no_usable_device(driver: Driver, fake: FakeDriver) -> None:
    driver.install(fake)
    assert runtime.gpu_present() is False
    assert fake.calls[0] == "cuInit(0)"


def test_gpu_probe_is_true_when_the_driver_counts_a_device_and_asks_it_once(driver: Driver) -> None:
    fake = FakeDriver(devices=1)
    driver.install(fake)
    assert runtime.gpu_present() is True
    assert runtime.gpu_present() is True
    assert fake.calls == ["cuInit(0)", "cuDeviceGetCount"]  # cached: the driver is probed once per process


def test_auto_ignores_a_listed_cuda_provider_when_the_driver_has_no_gpu(
    driver: Driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # onnxruntime-gpu lists CUDA on machines without a GPU: the driver's answer decides, not the list
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: BOTH)
    driver.install(None)
    assert runtime.choose_providers("auto") == ["CPUExecutionProvider"]
    driver.install(FakeDriver(devices=0))
    assert runtime.choose_providers("auto") == ["CPUExecutionProvider"]


def test_auto_stays_on_cpu_when_a_gpu_is_present_but_no_cuda_provider(
    driver: Driver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    driver.install(FakeDriver(devices=1))
    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert runtime.choose_providers("auto") == ["CPUExecutionProvider"]
    assert "using CPU" not in caplog.text  # only an explicit 'cuda' request warns


def test_session_asks_for_cuda_first_when_the_driver_reports_a_gpu(
    driver: Driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[dict[str, Any]] = []

    class RecordingSession:
        def __init__(self, model: Any, sess_options: Any = None, providers: Any = None):
            asked.append({"model": model, "providers": providers, "threads": sess_options.intra_op_num_threads})

    monkeypatch.setattr(runtime.ort, "get_available_providers", lambda: BOTH)
    monkeypatch.setattr(runtime.ort, "InferenceSession", RecordingSession)
    driver.install(FakeDriver(devices=1))
    runtime.make_session(b"onnx bytes", device="auto", threads=2)
    runtime.make_session(Path("m.onnx"), device="cpu")
    assert asked[0] == {"model": b"onnx bytes", "providers": BOTH, "threads": 2}
    assert asked[1]["model"] == "m.onnx" and asked[1]["providers"] == ["CPUExecutionProvider"]
    driver.install(None)  # the same host without a driver: the session never asks for CUDA
    runtime.make_session(b"onnx bytes", device="auto")
    assert asked[2]["providers"] == ["CPUExecutionProvider"]


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


def test_latency_of_several_models_is_timed_in_interleaved_rounds() -> None:
    """Each round times every model once, starting one further along: no model is always timed first (after
    another model warmed the caches) and none is timed minutes after the others."""
    order: list[str] = []

    class Recording:
        def __init__(self, name: str) -> None:
            self.name = name

        def predict(self, batch: np.ndarray) -> np.ndarray:
            order.append(self.name)
            return batch

    models = {name: Recording(name) for name in ("a", "b", "c")}
    timed = runtime.interleaved_latency(models, np.zeros((1, 2)), runs=3)  # type: ignore[arg-type]
    assert order == ["a", "b", "c"] + ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # warm-ups, then 3 rounds
    assert set(timed) == {"a", "b", "c"} and all(0 <= t["p50"] <= t["p95"] for t in timed.values())


def test_the_service_loads_sessions_whose_idle_threads_sleep(onnx_store: Path) -> None:
    """KILN_ORT_SPINNING is off by default: the service's sessions do not busy-wait between runs (the cores go
    to the other requests in flight); a batch job keeps ONNX Runtime's default."""
    from serving.live import LiveModels
    from serving.settings import Settings

    key = "session.intra_op.allow_spinning"
    live = LiveModels(ModelStore(onnx_store), Settings(store=onnx_store, device="cpu"))
    live.refresh()
    served = live.get("image")
    assert served is not None and served.session.get_session_options().get_session_config_entry(key) == "0"
    model = ModelStore(onnx_store).production_version("image")
    assert model is not None
    default = runtime.Classifier.from_version(model, device="cpu").session.get_session_options()
    with pytest.raises(Exception, match=key):  # not set: ONNX Runtime's default (spinning) applies
        default.get_session_config_entry(key)


def test_a_whole_split_is_scored_in_runs_that_give_the_answers_of_one(onnx_store: Path) -> None:
    model = ModelStore(onnx_store).production_version("image")
    assert model is not None
    clf = runtime.Classifier.from_version(model, device="cpu")
    x = np.random.default_rng(0).uniform(0, 1, (runtime.OFFLINE_BATCH * 2 + 5, 8, 8, 1)).astype(np.float32)
    assert np.allclose(clf.predict_all(x), clf.predict(x), atol=1e-6)
    assert np.allclose(clf.predict_all(x, batch_size=7), clf.predict(x), atol=1e-6)
    assert clf.predict_all(x[:0]).shape == (0, len(IMAGE_LABELS))
