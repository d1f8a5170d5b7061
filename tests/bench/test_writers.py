"""What the benchmarks write is what the renderer reads: the result shapes, with the slow parts (training, timing,
servers) replaced, and the quality bench's reruns reading the previous JSON, never Markdown."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import bench.quality as quality
from bench.common import read_result, write_result
from bench.render import render
from bench.splits import SplitSource

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
    """Two small text sets with real split files; `kiln run` and the peer replaced by instant fakes that log what
    they were asked and predict from the test file (Kiln right on 9 of 10 items, the peer on 8)."""
    calls: list[tuple[str, int | None]] = []
    rows = [(f"{w} text number {i}", w) for i in range(25) for w in ("good", "bad")]
    data = {}
    for name in ("sample_texts", "mr"):
        data[name] = tmp_path / name / "data.csv"
        data[name].parent.mkdir(parents=True)
        with open(data[name], "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows([("text", "label"), *rows])
    monkeypatch.setattr(quality, "available_sets", lambda shared: ["sample_texts", "mr"])
    monkeypatch.setattr(quality, "split_source", lambda name, workdir, shared: SplitSource(name, "text", (data[name],)))

    def wrong(labels: list[str], n: int) -> list[str]:
        return [("bad" if y == "good" else "good") if i < n else y for i, y in enumerate(labels)]

    def run(split: Any, test: Any, workdir: Path, trials: int | None, measured: str) -> tuple[dict, list[str]]:
        calls.append((f"kiln {split.name}", trials))
        assert split.train.name == "train.csv" and split.train.parent.parent == workdir / "splits"
        column = {
            "accuracy": 0.9,
            "macro_f1": 0.89,
            "correct": 9,
            "model": "text_hybrid",
            "variant": "pruned_int8",
            "gzip_bytes": 95,
            "train_seconds": 12.0,
            "run_seconds": 20.0,
            "peak_rss_mib": 900.0,
            "kept_items": 40,
            "measured": measured,
            "spec": None,
        }
        if trials:
            return column | {"trials": trials, "beat_default": True}, wrong(test.labels, 0)
        return column | {"variants": quality.variant_list(REPORT_VARIANTS), "skipped": {}}, wrong(test.labels, 1)

    def peer(task: str, train: Any, test: Any, spec: Any, measured: str) -> tuple[dict, list[str]]:
        calls.append((f"peer {len(train.labels)} train items", None))
        found = {"name": "TF-IDF 1-2-gram + LinearSVC", "accuracy": 0.8, "macro_f1": 0.79, "correct": 8}
        return found | {"candidates": [found], "measured": measured}, wrong(test.labels, 2)

    monkeypatch.setattr(quality, "kiln_run", run)
    monkeypatch.setattr(quality, "classic_peer", peer)
    return calls


def test_quality_result_renders_and_reruns_read_the_previous_json(
    tmp_path: Path, fake_runs: list[tuple[str, int | None]]
) -> None:
    out = tmp_path / "bench" / "quality.json"
    earlier = {"name": "sample texts", "task": "text", "peer": {}, "default": {}, "tuned": None}  # schema 1
    first = quality.run_quality_bench(tmp_path / "work", 0, None, tmp_path, previous={"rows": [earlier]})
    write_result(out, first)
    assert first["schema"] == 2 and [row["name"] for row in first["rows"]] == ["sample_texts", "mr"]
    assert fake_runs == [("kiln sample_texts", None), ("peer 40 train items", None), ("kiln mr", None)] + [
        ("peer 40 train items", None)
    ]
    row = first["rows"][1]
    assert row["schema"] == 2 and row["train_items"] == 40 and row["test_items"] == 10
    assert row["split"]["method"] == "stratified" and row["split"]["test_in_train"] == 0
    assert row["comparison"]["kiln_only_correct"] == 1 and row["comparison"]["peer_only_correct"] == 0
    assert row["tuned"] is None and row["tuned_note"] == "not run (--trials 0)" and "spec" not in row["default"]
    assert first["parameters"]["seed"] == 42 and first["parameters"]["sets"] == ["sample_texts", "mr"]
    md = render({"quality": read_result(out) or {}})
    assert "| mr | text | 40 | 10 | 0.9000 (text_hybrid, pruned_int8, 0.1 KiB gzip) | not run (--trials 0) " in md
    assert "| TF-IDF 1-2-gram + LinearSVC 0.8000 | +10.00 | 1 (1/0) | win | 12 (20) | 900 |" in md
    assert "This run measured every row." in md and "sample texts" not in md  # the earlier row was replaced
    assert "| mr | pruned_int8 (served) | tfmot_magnitude+static_qdq_minmax | 95 | 10.53 | 0.75 | 0.9050 | +0.50 " in md

    # --only mr --reuse-default --trials 2: only mr's tuned column is trained; the rest comes from quality.json
    fake_runs.clear()
    second = quality.run_quality_bench(tmp_path / "work", 2, ["mr"], tmp_path, read_result(out), reuse_default=True)
    assert fake_runs == [("kiln mr", 2)]
    before, after = (first["rows"][0], first["rows"][1]), (second["rows"][0], second["rows"][1])
    assert after[0] == before[0]  # sample_texts: kept as it was
    assert after[1]["peer"] == before[1]["peer"] and after[1]["default"] == before[1]["default"]
    assert after[1]["tuned"]["trials"] == 2 and after[1]["tuned"]["measured"] == second["measured"]
    # the tuned column's McNemar test against the peer's saved predictions of the same test file
    assert (
        after[1]["tuned"]["vs_peer"]["kiln_only_correct"] == 2
        and after[1]["tuned"]["vs_peer"]["peer_only_correct"] == 0
    )
    # --only mr --trials 0 --keep-tuned: the default and peer run again; the tuned column stays, with its date
    second["rows"][1]["tuned"]["measured"] = "2026-01-02T03:04:05Z"
    write_result(out, second)
    fake_runs.clear()
    third = quality.run_quality_bench(tmp_path / "work", 0, ["mr"], tmp_path, read_result(out), keep_tuned=True)
    assert fake_runs == [("kiln mr", None), ("peer 40 train items", None)]
    assert third["rows"][1]["tuned"] == second["rows"][1]["tuned"]
    assert third["rows"][1]["tuned_note"] == "kept from the run of 2026-01-02T03:04:05Z"
    assert (
        "their tuned columns are kept from the runs of 2026-01-02 03:04 UTC, made by the code of that date "
        "(`--keep-tuned`)" in render({"quality": third})
    )
    with pytest.raises(SystemExit, match="give --trials 0"):
        quality.run_quality_bench(tmp_path / "work", 2, ["mr"], tmp_path, read_result(out), keep_tuned=True)
    with pytest.raises(SystemExit, match="no run of 'mr' under the user protocol"):
        quality.run_quality_bench(tmp_path / "work", 2, ["mr"], tmp_path, {"rows": [earlier | {"name": "mr"}]}, True)
    with pytest.raises(SystemExit, match="unknown or absent data set"):
        quality.run_quality_bench(tmp_path / "work", 0, ["nope"], tmp_path, None)


def test_training_and_http_results_render(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import bench.serving as serving

    monkeypatch.setattr(serving, "_probe_input", lambda spec: np.zeros((1, 4), np.float32))
    timed = []

    def latency(path: Path, spec: Any, x: np.ndarray) -> dict[str, float]:
        timed.append(path)
        return {"latency_ms_p50": 0.05, "latency_ms_p95": 0.07, "latency_ms_b32_p50": 0.5}

    monkeypatch.setattr(serving, "batch_latency", latency)
    report = {
        "variants": {k: REPORT_VARIANTS[k] | {"file": f"variants/{k}.onnx"} for k in ("fp32", "int8")},
        "metrics": {"accuracy": 0.98, "macro_f1": 0.97, "examples": 245},
        "training": {"train_seconds": 46.2, "epochs_run": 40},
        "served_variant": "int8",
    }
    (tmp_path / "spec.json").write_text('{"kind": "image", "labels": ["a", "b"], "height": 8, "width": 8}')
    row = serving.training_row("image", report, tmp_path, 93.44)
    assert timed == [tmp_path / "variants" / f"{k}.onnx" for k in ("fp32", "int8")]  # the run's, not the store's
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
