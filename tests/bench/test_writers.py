"""What the benchmarks write is what the renderer reads: the result shapes, with the slow parts (training, timing,
servers) replaced, and the quality bench's reruns reading the previous JSON, never Markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bench.quality as quality
from bench.common import read_result, write_result
from bench.render import render

REPORT_VARIANTS: dict[str, dict[str, Any]] = {
    name: {
        "method": method,
        "bytes": size + 100,
        "gzip_bytes": size,
        "sparsity": sparsity,
        "accuracy": acc,
        "macro_f1": acc - 0.01,
        "latency_ms_p50": b1,
        "latency_ms_p95": b1 * 1.5,
        "latency_ms_b32_p50": b32,
        "throughput_per_s": 32_000 / b32,
        "onnx_path": "/somewhere/model.onnx",  # not kept: only the measurements go to docs/bench
    }
    for name, method, size, sparsity, acc, b1, b32 in (
        ("fp16", "fp16", 500, 0.0, 0.91, 0.21, 4.1),
        ("pruned_int8", "tfmot_magnitude+static_qdq_minmax", 95, 0.75, 0.905, 0.1, 2.5),
        ("fp32", "tf2onnx", 1000, 0.0, 0.91, 0.2, 4.0),
        ("int8", "static_qdq_minmax", 260, 0.0, 0.91, np.float64(0.16), 3.0),
    )
}


def test_variant_list_orders_variants_and_computes_ratios_unrounded() -> None:
    rows = quality.variant_list(REPORT_VARIANTS)
    assert [r["variant"] for r in rows] == ["fp32", "int8", "pruned_int8", "fp16"]
    pi8 = rows[2]
    assert "onnx_path" not in pi8 and pi8["gzip_bytes"] == 95
    assert pi8["vs_fp32"] == {
        "gzip_x_smaller": round(1000 / 95, 4),
        "accuracy_drop_points": 0.5,
        "b32_x_faster": 1.6,
        "b1_time": 0.5,
    }


@pytest.fixture
def fake_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, int | None]]:
    """Two data sets; the peer and the retrain flow replaced by instant fakes that log what they were asked."""
    calls: list[tuple[str, int | None]] = []
    sets = {"sample texts": ("text", tmp_path / "texts.csv"), "mr": ("text", tmp_path / "mr" / "data.csv")}
    monkeypatch.setattr(quality, "datasets", lambda sample, shared: sets)
    monkeypatch.setattr("training.data.sample_data.write_sample_data", lambda directory: {})

    def peer(task: str, path: Path) -> dict[str, Any]:
        calls.append((f"peer {path.parent.name}", None))
        return {
            "name": "TF-IDF 1-2 gram + linear SVM",
            "c": 1.0,
            "accuracy": 0.8,
            "accuracy_train_val": 0.81,
            "seconds": 0.3,
        }

    def run(task: str, path: Path, workdir: Path, trials: int | None, measured: str) -> dict[str, Any]:
        calls.append((f"kiln {path.parent.name}", trials))
        out = {
            "accuracy": 0.85 if trials else 0.84,
            "model": "text_hybrid",
            "variant": "pruned_int8",
            "train_seconds": 12.0,
            "wall_seconds": 20.0,
            "test_items": 100,
            "measured": measured,
        }
        if trials:
            return out | {"trials": trials, "beat_default": True}
        return out | {"variants": quality.variant_list(REPORT_VARIANTS), "skipped": {"qat": "too few weights"}}

    monkeypatch.setattr(quality, "classic_peer", peer)
    monkeypatch.setattr(quality, "kiln_run", run)
    return calls


def test_quality_result_renders_and_reruns_read_the_previous_json(
    tmp_path: Path, fake_runs: list[tuple[str, int | None]]
) -> None:
    out = tmp_path / "bench" / "quality.json"
    first = quality.run_quality_bench(tmp_path / "work", 0, None, tmp_path, previous=None)
    write_result(out, first)
    assert [row["name"] for row in first["rows"]] == ["sample texts", "mr"]
    assert all(row["tuned"] is None for row in first["rows"])
    assert first["parameters"]["seed"] == 42 and first["machine"]["cores"] >= 1
    md = render({"quality": read_result(out) or {}})
    assert "| mr | text | 100 | TF-IDF 1-2 gram + linear SVM (C=1) | 0.8000 (0.3 s) | 0.8100 " in md
    assert "the tuned column was not run" in md and "This run measured every row." in md
    assert "| mr | pruned_int8 (served) | tfmot_magnitude+static_qdq_minmax | 95 | 10.53 | 0.75 | 0.9050 | +0.50 " in md

    # --only mr --reuse-default --trials 2: only mr's tuned column is trained; the rest comes from quality.json
    fake_runs.clear()
    second = quality.run_quality_bench(tmp_path / "work", 2, ["mr"], tmp_path, read_result(out), reuse_default=True)
    assert fake_runs == [("kiln mr", 2)]
    before, after = (first["rows"][0], first["rows"][1]), (second["rows"][0], second["rows"][1])
    assert after[0] == before[0]  # sample texts: kept as it was
    assert after[1]["peer"] == before[1]["peer"] and after[1]["default"] == before[1]["default"]
    assert after[1]["tuned"]["trials"] == 2 and after[1]["tuned"]["measured"] == second["measured"]
    with pytest.raises(SystemExit, match="no run of 'mr'"):
        quality.run_quality_bench(tmp_path / "work", 2, ["mr"], tmp_path, None, reuse_default=True)


def test_training_and_http_results_render(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.serving as serving

    monkeypatch.setattr(serving, "_probe_input", lambda model: np.zeros((1, 4), np.float32))
    monkeypatch.setattr(
        serving,
        "batch_latency",
        lambda model, name, x: {"latency_ms_p50": 0.05, "latency_ms_p95": 0.07, "latency_ms_b32_p50": 0.5},
    )
    report = {
        "variants": {k: REPORT_VARIANTS[k] for k in ("fp32", "int8")},
        "metrics": {"accuracy": 0.98, "macro_f1": 0.97, "examples": 245},
        "training": {"train_seconds": 46.2, "epochs_run": 40},
        "served_variant": "int8",
    }
    row = serving.training_row("image", report, object(), 93.44)
    rounds = [
        {"requests_per_s": rps, "latency_ms_p50": 1.0, "latency_ms_p95": 2.0, "latency_ms_p99": 3.0, "errors": 0}
        for rps in (500.0, 560.0, 600.0)
    ]
    stats = serving._median_stats(rounds)
    assert stats == {
        "requests_per_s": 560.0,
        "latency_ms_p50": 1.0,
        "latency_ms_p95": 2.0,
        "latency_ms_p99": 3.0,
        "errors": 0,
    }
    machine = {"cpu": "CPU", "cores": 2, "ram_gib": 8, "gpu": False, "platform": "p"}
    envelope = {"schema": 1, "measured": "2026-11-25T10:00:00Z", "machine": machine}
    md = render(
        {
            "training": envelope
            | {"parameters": {"sample_images": 1797, "sample_texts": 660, "latency_runs": 30}, "rows": [row]},
            "http": envelope
            | {
                "parameters": {"seconds": 9.0, "rounds": 3},
                "rows": [
                    {"route": "/r", "payload": "p", "concurrency": 1, "servers": dict.fromkeys(serving.SERVERS, stats)}
                ],
            },
        }
    )
    assert (
        "| image | 93 | 46 | 40 | int8 (served) | 360 | 260 | 3.85 | 0.00 | 0.9100 | 0.9000 | 0.050 | 0.070 | 0.500 |"
        in md
    )
    assert "| /r | p | 1 | 560.0 | 560.0 | 560.0 | 1.00 | 1.0 | 1/2/3 | 1/2/3 | 1/2/3 | 0/0/0 |" in md
