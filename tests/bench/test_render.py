"""docs/BENCHMARKS.md from the result files: tables, computed verdicts, missing sections, and the writer."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from bench.common import markdown_for, read_result, read_results, show_utc, write_result
from bench.render import render, render_dir, write_markdown

ROOT = Path(__file__).resolve().parents[2]
MACHINE = {"cpu": "Test CPU", "cores": 2, "ram_gib": 7.8, "gpu": False, "platform": "Linux-test"}
RUN = "2026-11-25T10:00:00Z"
EARLIER = "2026-11-20T09:30:00Z"


def _result(benchmark: str, parameters: dict[str, Any], measured: str = RUN, **data: Any) -> dict[str, Any]:
    base = {"benchmark": benchmark, "schema": 1, "measured": measured, "machine": MACHINE, "parameters": parameters}
    return base | data


def _variant(name: str, gzip: int, acc: float, b1: float, b32: float, vs: dict[str, float]) -> dict[str, Any]:
    return {
        "variant": name,
        "method": f"m_{name}",
        "gzip_bytes": gzip,
        "sparsity": 0.75 if "pruned" in name else 0.0,
        "accuracy": acc,
        "latency_ms_p50": b1,
        "latency_ms_b32_p50": b32,
        "vs_fp32": vs,
    }


def _earlier_row(name: str, task: str, peer_acc: float, default_acc: float, measured: str, **kw: Any) -> dict:
    """A quality.json row of the earlier protocol (schema 1: Kiln's own split scored)."""
    fp32 = _variant(
        "fp32", 1000, 0.90, 0.2, 4.0, {"gzip_x_smaller": 1.0, "accuracy_drop_points": 0.0, "b32_x_faster": 1.0}
    )
    pruned_int8 = _variant(
        "pruned_int8",
        kw.get("pi8_gzip", 90),
        0.895,
        0.1,
        2.0,
        {"gzip_x_smaller": kw.get("pi8_ratio", 11.1), "accuracy_drop_points": 0.5, "b32_x_faster": 2.0, "b1_time": 0.5},
    )
    int8 = _variant(
        "int8", 250, 0.9, 0.15, 3.2, {"gzip_x_smaller": 4.0, "accuracy_drop_points": 0.0, "b32_x_faster": 1.25}
    )
    return {
        "name": name,
        "task": task,
        "test_items": 100,
        "peer": {
            "name": "TF-IDF 1-2 gram + linear SVM",
            "c": 3.0,
            "accuracy": peer_acc,
            "accuracy_train_val": peer_acc,
            "seconds": 0.42,
            "measured": measured,
        },
        "default": {
            "accuracy": default_acc,
            "model": "text_hybrid",
            "variant": kw.get("served", "pruned_int8"),
            "train_seconds": 61.4,
            "test_items": 100,
            "measured": measured,
            "variants": [fp32, int8, pruned_int8],
            "skipped": {"qat": "x" * 200},
        },
        "tuned": kw.get("tuned"),
    }


def _quality_row(
    name: str, task: str, peer_acc: float, default_acc: float, measured: str, b: int, c: int, p: float, **kw: Any
) -> dict:
    """A user-protocol row (schema 2), as bench.quality.quality_row writes it."""
    old = _earlier_row(name, task, peer_acc, default_acc, measured, **kw)
    default = (
        old["default"]
        | {
            "macro_f1": round(default_acc - 0.01, 6),
            "correct": round(default_acc * 1000),
            "gzip_bytes": 46553,
            "bytes": 50000,
            "run_seconds": 180.4,
            "peak_rss_mib": 1234.5,
            "kept_items": 4990,
            "version": "v1",
            "promoted": True,
            "input": "max 64 tokens, 8,000 words",
            "internal_test": {"accuracy": 0.5, "items": 750},
        }
        | ({"stored_bytes": kw["stored"]} if "stored" in kw else {})
    )
    candidates = [
        {"name": "TF-IDF 1-2-gram + LinearSVC", "accuracy": peer_acc, "macro_f1": peer_acc - 0.02, "converged": True},
        {"name": "counts + multinomial NB", "accuracy": peer_acc - 0.01, "macro_f1": 0.7, "converged": False},
    ]
    return {
        "schema": 2,
        "name": name,
        "task": task,
        "split": {
            "method": "stratified",
            "described": "data.csv, stratified 80%/20%, seed 42",
            "seed": 42,
            "test_fraction": 0.2,
            "train_items": 5000,
            "test_items": 1000,
            "test_in_train": 0,
            "classes": 2,
        },
        "train_items": 5000,
        "test_items": 1000,
        "test_skipped": 0,
        "default": default,
        "tuned": kw.get("tuned"),
        "tuned_note": None if kw.get("tuned") else "not run (--trials 0)",
        "peer": {
            "name": candidates[0]["name"],
            "accuracy": peer_acc,
            "macro_f1": peer_acc - 0.02,
            "correct": round(peer_acc * 1000),
            "input": "texts",
            "train_items": 4998,
            "candidates": candidates,
            "measured": measured,
        },
        "comparison": {
            "difference_points": round(100 * (default_acc - peer_acc), 4),
            "kiln_only_correct": b,
            "peer_only_correct": c,
            "mcnemar_p": p,
            "verdict": "stored, not read: the renderer computes it",
            "bar_points": 0.5,
        },
    }


@pytest.fixture
def results() -> dict[str, dict[str, Any]]:
    training = _result(
        "training",
        {"sample_images": 1797, "sample_texts": 660, "latency_runs": 30},
        rows=[
            {
                "task": "image",
                "wall_seconds": 93.4,
                "train_seconds": 46.0,
                "epochs": 40,
                "served": "int8",
                "test": {"accuracy": 0.98371, "macro_f1": 0.9841, "items": 245},
                "variants": [
                    {
                        "variant": "fp32",
                        "bytes": 400999,
                        "gzip_bytes": 369248,
                        "sparsity": 0.0,
                        "accuracy": 0.9957,
                        "macro_f1": 0.9962,
                        "latency_ms_p50": 0.0561,
                        "latency_ms_p95": 0.075,
                        "latency_ms_b32_p50": 0.54,
                    },
                    {
                        "variant": "int8",
                        "bytes": 121513,
                        "gzip_bytes": 99988,
                        "sparsity": 0.0,
                        "accuracy": 0.9914,
                        "macro_f1": 0.9916,
                        "latency_ms_p50": 0.046,
                        "latency_ms_p95": 0.059,
                        "latency_ms_b32_p50": 0.43,
                    },
                ],
            }
        ],
    )
    server = {"latency_ms_p50": 1.69, "latency_ms_p95": 1.98, "latency_ms_p99": 30.4, "errors": 0}
    http = _result(
        "http",
        {"seconds": 9.0, "rounds": 3, "concurrency": [1], "servers": ["kiln", "bare", "keras"]},
        rows=[
            {
                "route": "/classify_image",
                "payload": "one 8x8 PNG",
                "concurrency": 1,
                "servers": {
                    "kiln": server | {"requests_per_s": 661.0},
                    "bare": server | {"requests_per_s": 622.8},
                    "keras": server | {"requests_per_s": 21.5, "errors": 2},
                },
            }
        ],
    )
    data = _result(
        "data_pipeline",
        {"images": 50000, "image_size": 64, "classes": 10, "epochs": 1, "image_cache": "none"},
        result={
            "images": 50000,
            "kept": 45867,
            "near_duplicates": 33437,
            "split": {"train": 41993, "validation": 2018, "test": 1856},
            "leakage": {"test_near_train": 0, "validation_near_train": 1},
            "cleaning_s": 24.9,
            "cleaning_ips": 2010.4,
            "pipeline_ips": 1768.0,
            "training_ips": 126.0,
            "epoch_s": 333.1,
            "input": "64x64x3",
            "peak_rss_after_cleaning_mib": 238.0,
            "peak_rss_mib": 4000.0,
            "peak_rss_worker_mib": 95.0,
            "wall_seconds": 371.2,
        },
    )
    tuned = {
        "accuracy": 0.85,
        "macro_f1": 0.84,
        "model": "text_kim",
        "variant": "int8",
        "trials": 4,
        "beat_default": True,
        "vs_peer": {"difference_points": 8.22, "kiln_only_correct": 100, "peer_only_correct": 18, "mcnemar_p": 1e-9},
        "run_seconds": 314.2,
        "measured": RUN,
    }
    quality = _result(
        "quality",
        {
            "protocol": "user (issue 17)",
            "trials": 4,
            "only": ["mr"],
            "reuse_default": True,
            "seed": 42,
            "test_fraction": 0.2,
            "sets": ["sample_texts", "mr", "cr", "sst2"],
        },
        rows=[
            _quality_row("mr", "text", 0.7678, 0.7876, EARLIER, 60, 40, 0.0569, tuned=tuned, stored=12_345_678),
            _quality_row("cr", "text", 0.8152, 0.8014, EARLIER, 3, 17, 0.0026, served="fp32", pi8_ratio=9.5),
            _earlier_row("sample texts", "text", 0.9, 0.95, EARLIER),
        ],
    )
    quality["schema"] = 2
    flips = _result("label_flips", {"flip_share": 0.05, "seed": 20, "only": None, "runs": []}, rows=[])
    predict_rows = [
        {"task": "text", "round": r, "workers": 0, "items": 1000, "seconds": s, "wall_seconds": s + 7,
         "peak_rss_mib": 600, "items_per_s": round(1000 / s), "ort_items_per_s": 5000, "ratio": round(0.2 / s, 3)}
        for r, s in ((1, 0.5), (2, 0.25))
    ]  # fmt: skip
    predict = _result("predict", {"texts": 1000, "images": 0, "batch": 64, "rounds": 2}, rows=predict_rows,
                      variants={"text": "pruned"})  # fmt: skip
    recipe_row = {"data_set": "gtsrb", "recipe": "default", "settings": {"batch_norm": True}, "recordings": None}
    recipe_row |= {"items": {"train": 70, "validation": 15, "test": 15}, "epochs_run": 40, "train_seconds": 9.0}
    recipe_row |= {"val_accuracy": 0.5, "test_accuracy": 0.6}
    recipe = _result("image_recipe", {"recipes": {"default": {}}}, rows=[recipe_row])
    text_recipe = _result("text_recipe", {"recipes": {"default": {}}}, rows=[recipe_row | {"data_set": "cr"}])
    return {r["benchmark"]: r for r in (training, http, data, quality, flips, predict, recipe, text_recipe)}


def _lines(markdown: str) -> set[str]:
    return set(markdown.splitlines())


def test_renders_every_table_with_its_rows(results: dict[str, dict[str, Any]]) -> None:
    md = render(results)
    lines = _lines(md)
    assert md.startswith("# Benchmarks\n")
    assert "Measured 2026-11-25 10:00 UTC by `make bench` on: Test CPU, 2 cores, 8 GiB RAM, no GPU; Linux-test." in md
    # training: gzip ratio against fp32, the served variant marked, its test score under the table
    assert (
        "| image | 93 | 46 | 40 | int8 (served) | 121,513 | 99,988 | 3.69 | 0.00 | 0.9914 | 0.9916 "
        "| 0.046 | 0.059 | 0.430 |" in lines
    )
    assert "image: serves int8, test accuracy 0.9837, macro-F1 0.9841 (245 items)." in lines
    # http: ratios from the data, latencies without trailing zeros, errors per server
    assert (
        "| /classify_image | one 8x8 PNG | 1 | 661.0 | 622.8 | 21.5 | 1.06 | 30.7 | 1.69/1.98/30.4 "
        "| 1.69/1.98/30.4 | 1.69/1.98/30.4 | 0/0/2 |" in lines
    )
    assert "(1 of 1 rows at or above it)" in md and "2 requests failed in all" in md
    assert "it shares the 2 cores" in md and "3 rounds of 3 s per row" in md
    # quality: a user-protocol row per data set; the earlier protocol's row is not in the table
    assert (
        "| mr | text | 5,000 | 1,000 | 0.7876 (text_hybrid, pruned_int8, 45.5 KiB gzip; version 12.3 MB on disk) "
        "| 0.8500 (text_kim, int8, 4 trials, beat the default on val, +8.22 vs peer, p<0.001) "
        "| TF-IDF 1-2-gram + LinearSVC 0.7678 | +1.98 | 0.057 (60/40) | win | 61 (180) | 1,234 |" in lines
    )
    assert (
        "| cr | text | 5,000 | 1,000 | 0.8014 (text_hybrid, fp32, 45.5 KiB gzip) | not run (--trials 0) "
        "| TF-IDF 1-2-gram + LinearSVC 0.8152 | -1.38 | 0.003 (3/17) | loss | 61 (180) | 1,234 |" in lines
    )
    assert "| sample texts | text |" not in md
    assert (
        "| mr | stratified: data.csv, stratified 80%/20%, seed 42 | 0 | 4,990 | 0.7876 / 0.7776 "
        "| TF-IDF 1-2-gram + LinearSVC 0.7678 / 0.7478; counts + multinomial NB 0.7578 / 0.7000 (not converged) |"
        in lines
    )
    assert "win is Kiln ahead by at least 0.5 points or 40% of the peer's error, whichever is smaller" in md
    assert "through `serving.runtime.Classifier`" in md and "stratified 80%/20% split (seed 42" in md
    # variants: stored ratios shown as they are, a long skip reason cut, the targets row
    assert "| mr | int8 | m_int8 | 250 | 4.00 | 0.00 | 0.9000 | +0.00 | 0.150 | 3.200 | 1.25 |  |  |" in lines
    assert "| mr | qat | skipped: " + "x" * 139 + "… |" + "  |" * 10 in lines
    assert "The last columns (Kiln's internal test split) are not yet measured for these runs." in md


def test_variants_show_agreement_on_validation_and_on_the_unseen_internal_test_split() -> None:
    from bench.render import variants_section

    row = _quality_row("mr", "text", 0.7, 0.72, "2026-12-07T08:00:00Z", 1, 1, 1.0, served="int8")
    variants = {v["variant"]: v for v in row["default"]["variants"]}
    variants["int8"]["agreement"] = 1.0
    variants["pruned_int8"] |= {"agreement": 0.995, "not_served": "not served: fine-tuned ..."}
    row["default"]["internal_test_variants"] = {
        "items": 500,
        "variants": {
            "fp32": {"accuracy": 0.9, "agreement": 1.0},
            "int8": {"accuracy": 0.9, "agreement": 0.998},
            "pruned_int8": {"accuracy": 0.87, "agreement": 0.95},
        },
    }
    md = "\n".join(variants_section({"rows": [row]}))
    assert (
        "| mr | int8 (served) | m_int8 | 250 | 4.00 | 0.00 | 0.9000 | +0.00 | 0.150 | 3.200 | 1.25 | 1.0000 "
        "| 0.9000 (0.9980) |" in md
    )
    assert "| mr | pruned_int8 (not servable) | m_pruned_int8 |" in md and "| 0.9950 | 0.8700 (0.9500) |" in md
    assert (
        "that passed agreed with fp32 on 99.5% of them; on the unseen items the same variants agreed on 95.0%, with "
        "accuracy -3.00 to -3.00 points against fp32 (1 variant)" in md
    )


def test_verdicts_and_counts_are_computed_from_the_data(results: dict[str, dict[str, Any]]) -> None:
    md = render(results)
    # quality: one win, one loss, computed from the accuracies; tuning's test score against the default's
    assert (
        "Kiln default against the best classic peer: 1 win, 0 ties, 1 loss on 2 data sets; McNemar's p < 0.05 on "
        "1 of the wins and losses (cr)." in md
    )
    assert (
        "Tuning was run on 1; its served model scores higher on the test file than the default's on 1 (mr), lower "
        "on 0 (none); tuned minus default: +6.24 points on average." in md
    )
    assert "No tuned run: cr." in md
    # the cost bounds of issue 17, from the largest default run (the stored size only where it was measured)
    assert (
        "Cost: the largest peak RSS is 1,234 MiB (mr; bound 2,048), the largest served text model 46,553 bytes "
        "gzipped (mr; bound 5,000,000) and the largest stored version 12.3 MB (mr; bound 50)." in md
    )
    # the data sets known without a user-protocol row, the earlier protocol's named as such
    assert (
        "Not yet measured under the user protocol: sample_texts, sst2. quality.json still holds rows of the earlier "
        "protocol (Kiln's own split scored) for sample texts; they are not shown here." in md
    )
    assert "From runs under the earlier quality protocol (Kiln given the whole data file): sample texts." in md
    # which rows this run measured, and the reused columns
    assert (
        "This run measured mr (their peer and default columns are from 2026-11-20 09:30 UTC, `--reuse-default`)" in md
    )
    assert "the other rows are from earlier runs: cr on 2026-11-20 09:30 UTC." in md
    # compression targets per data set and in sum
    assert (
        "| mr | targets: pruned_int8 11.1x smaller, +0.50 points: met; served pruned_int8 2.00x faster at b32, "
        "b1 0.50x fp32's time: met |" in md
    )
    assert "| cr | targets: pruned_int8 9.5x smaller, +0.50 points: missed; served fp32 1.00x faster at b32" in md
    assert (
        "The pruned_int8 target is met on 2 of 3 data sets (mr, sample texts); the served-variant speed target on "
        "2 of 3 (mr, sample texts)." in md
    )
    assert "so INT8 runs batch 32 only 1.25-1.25x as fast as fp32" in md
    # data pipeline targets: the RSS limit and the leakage are missed here
    assert "| peak RSS, main process (whole run) | 4,000 MiB | < 3,072 MiB: **missed** |" in md
    assert "| cleaning throughput | 2,010 images/s (24.9 s) | >= 500 images/s: met |" in md
    assert "| pipeline / training | 14.0x | >= 3x: met |" in md
    assert "leakage 0: **missed** |" in md
    # GPU: said from the training run's machine
    assert "Not measured in the `make bench` run of 2026-11-25 10:00 UTC: no GPU on this machine." in md


def test_the_tuned_cell_says_whether_tuning_adopted_its_best_trial() -> None:
    from bench.render import tuned_cell

    tuned = {"accuracy": 0.8, "model": "text_linear", "variant": "int8", "trials": 10, "beat_default": True}
    assert "10 trials, beat the default on val" in tuned_cell({"tuned": tuned | {"adopted": "best"}})
    kept = tuned_cell({"tuned": tuned | {"adopted": "default"}})
    assert "kept the default: the best trial's gain on val was within noise" in kept
    assert "the default was the best trial" in tuned_cell({"tuned": tuned | {"beat_default": False}})
    assert "trials)" in tuned_cell({"tuned": tuned | {"beat_default": None}})  # runs from before the summary


def test_every_row_measured_now_says_so(results: dict[str, dict[str, Any]]) -> None:
    quality = results["quality"]
    for row in quality["rows"]:
        for part in ("peer", "default"):
            row[part]["measured"] = RUN
    assert "This run measured every row." in render({"quality": quality})


def test_a_missing_result_leaves_its_section_out(results: dict[str, dict[str, Any]]) -> None:
    md = render({"http": results["http"]})
    assert "## HTTP service against its peers (CPU)" in md
    for absent in ("## Training", "## GPU", "## Data pipeline", "## Quality", "## Compression variants"):
        assert absent not in md
    assert "Not measured yet: training and compression (`make bench`); data pipeline (`make bench-data`)" in md
    assert "Not measured yet" not in render(results)
    assert render({}).startswith("# Benchmarks\n")


def test_render_dir_reads_every_result_file(tmp_path: Path, results: dict[str, dict[str, Any]]) -> None:
    for name in ("quality", "data_pipeline"):
        write_result(tmp_path / "bench" / f"{name}.json", results[name])
    out = write_markdown(tmp_path / "bench")
    assert out == tmp_path / "BENCHMARKS.md" == markdown_for(tmp_path / "bench" / "quality.json")
    md = out.read_text()
    assert md == render_dir(tmp_path / "bench")
    assert "## Quality against classic peers (CPU)" in md and "## Data pipeline at scale (CPU)" in md
    assert "## HTTP" not in md


def test_result_round_trip_through_the_atomic_writer(tmp_path: Path, results: dict[str, dict[str, Any]]) -> None:
    path = tmp_path / "deeper" / "http.json"
    write_result(path, results["http"])
    assert read_result(path) == results["http"]
    assert json.loads(path.read_text())["rows"][0]["servers"]["kiln"]["requests_per_s"] == 661.0  # a number
    assert path.stat().st_mode & 0o044  # readable like any other file, not mkstemp's 0600
    assert read_results(tmp_path / "deeper") == {"http": results["http"]}
    # an unwritable result leaves the previous file whole and no temporary file behind
    with pytest.raises(ValueError):
        write_result(path, results["http"] | {"bad": math.nan})
    assert read_result(path) == results["http"]
    assert [p.name for p in path.parent.iterdir()] == ["http.json"]
    assert read_result(tmp_path / "absent.json") is None


def test_stamps_show_as_utc_minutes() -> None:
    assert show_utc("2026-11-24T13:49:07Z") == "2026-11-24 13:49 UTC"
    assert show_utc("2026-11-24T14:49:00+01:00") == "2026-11-24 13:49 UTC"


def test_the_committed_page_is_rendered_from_the_committed_results() -> None:
    """docs/BENCHMARKS.md is never edited by hand: rendering docs/bench/ gives it back unchanged."""
    assert (ROOT / "docs" / "BENCHMARKS.md").read_text(encoding="utf-8") == render_dir(ROOT / "docs" / "bench")


def test_rows_of_the_earlier_protocol_are_not_shown_as_user_protocol_results(
    results: dict[str, dict[str, Any]],
) -> None:
    """quality.json written before the user protocol: no quality table, its sets listed as not yet measured; their
    compression variants still show, named as the earlier protocol's."""
    quality = results["quality"] | {"schema": 1, "parameters": {"trials": 2, "seed": 42}}
    quality["rows"] = [
        _earlier_row("sst2 (train.csv)", "text", 0.8, 0.81, EARLIER),
        _earlier_row("sample texts", "text", 0.9, 0.95, EARLIER),
    ]
    md = render({"quality": quality})
    assert (
        "No data set has been measured under the user protocol yet (quality.json was last written 2026-11-25 10:00 "
        "UTC). Not yet measured under the user protocol: sample_digits, sample_texts, mr, subj, cr, mpqa, sst2, "
        "ag_news, ohsumed23, snips, clinc150, notmnist, gtsrb, flowers5. quality.json still holds rows of the earlier "
        "protocol (Kiln's own split scored) for sst2 (train.csv), sample texts; they are not shown here." in md
    )
    assert "Measured 2026-11-25" not in md  # nothing in the section was measured under the protocol it describes
    assert "| data set | task | train items |" not in md and "| sst2 (train.csv) | text |" not in md
    assert "| sample texts | fp32 | m_fp32 | 1,000 |" in md
    assert "earlier quality protocol (Kiln given the whole data file): sst2 (train.csv), sample texts." in md


def test_calibration_and_label_flips_tables_come_from_their_data(results: dict[str, dict[str, Any]]) -> None:
    mr = results["quality"]["rows"][0]
    mr["default"]["calibration"] = {"temperature": 1.25, "ece": 0.021, "ece_uncalibrated": 0.0612, "labels_changed": 0}
    sst2 = json.loads(json.dumps(results["quality"]["rows"][0])) | {"name": "sst2"}
    sst2["default"]["calibration"] = {"temperature": 1.0, "link": "sigmoid", "ece": 0.04, "ece_uncalibrated": 0.09}
    sst2["default"]["calibration"]["labels_changed"] = 0
    results["quality"]["rows"].append(sst2)
    flips = {"items_audited": 4000, "flipped_in_file": 250, "flipped_audited": 190, "flagged": 300}
    flips |= {"recall_of_flagged": 0.9, "audit_seconds": 3.2, "model": "TF-IDF words 1-2 + logistic regression"}
    run = {"run_seconds": 140.0, "peak_rss_mib": 900.0, "audit_seconds": 3.4, "flagged": 300}
    results["label_flips"] = _result(
        "label_flips",
        {"flip_share": 0.05, "seed": 20, "only": None, "runs": ["subj"]},
        rows=[
            {"name": "subj", "task": "text", "precision_at_k": 0.8211, "estimated_noise_rate": 0.07, **flips}
            | {
                "runs": {
                    "report": run | {"accuracy": 0.9, "macro_f1": 0.9, "excluded": 0},
                    "exclude": run | {"accuracy": 0.9123, "macro_f1": 0.91, "excluded": 250},
                }
            },
            {"name": "cr", "task": "text", "precision_at_k": 0.55, "estimated_noise_rate": 0.2, **flips},
        ],
    )
    md = render(results)
    lines = _lines(md)
    assert "1 of 2 data sets within 0.03." in md
    assert "| mr | T = 1.250 | 0.0612 | 0.0210 | yes | 0 |" in lines
    assert "| sst2 | sigmoid link | 0.0900 | 0.0400 | no | 0 |" in lines
    assert "1 of 2 data sets reach 0.7 (subj)." in md
    assert (
        "| subj | text | 4,000 | 190 of 250 | 0.821 | yes | 300 (90% of the flips) | 3.2 "
        "| TF-IDF words 1-2 + logistic regression |" in lines  # no model accuracy in this row: none shown
    )
    assert "| cr | text | 4,000 | 190 of 250 | 0.550 | no |" in md
    assert "| subj | 0.9000 | 0.9123 (250 left out) | +1.23 | 3.4 of 140 |" in lines


def test_the_prediction_table_gives_ranges_over_rounds_and_the_targets(results: dict[str, dict[str, Any]]) -> None:
    md = render({"predict": results["predict"]})
    row = "| 1,000 texts (pruned) | this process | 2,000-4,000 | 5,000 | 0.40-0.80 | 0.2-0.5 | 600 | yes | no |"
    assert row in _lines(md)


def test_flipping_changes_the_share_asked_each_to_another_class() -> None:
    from bench.label_flips import flip

    labels = [c for c in "abc" for _ in range(100)]
    flipped, rows = flip(labels, 0.05, seed=1)
    assert len(rows) == 15 and flip(labels, 0.05, seed=1) == (flipped, rows)
    assert all((flipped[i] != labels[i]) == (i in rows) for i in range(len(labels)))


def test_the_image_recipe_table_compares_recipes_per_set_and_on_average() -> None:
    def row(name: str, recipe: str, val: float, test: float, recordings: int | None = None) -> dict[str, Any]:
        items = {"train": 700, "validation": 150, "test": 150}
        settings = {"batch_norm": recipe == "default", "early_stopping_monitor": "val_accuracy"}
        scores = {"epochs_run": 40, "train_seconds": 12.3, "val_accuracy": val, "test_accuracy": test}
        return {
            "data_set": name,
            "recipe": recipe,
            "settings": settings,
            "items": items,
            "recordings": recordings,
        } | scores

    recipes = {"previous": {"train": {}}, "default": {}}
    rows = [row("gtsrb", "previous", 0.1, 0.2, 216), row("gtsrb", "default", 0.5, 0.6, 216)]
    rows.append(row("notmnist", "default", 0.9, 0.8))
    md = render({"image_recipe": _result("image_recipe", {"recipes": recipes}, rows=rows)})
    lines = _lines(md)
    assert "| data set | split | previous | default |" in lines
    assert (
        "| gtsrb | 700 / 150 / 150 (216 recordings kept whole) | 0.1000 / 0.2000 (40 ep, 12 s) "
        "| 0.5000 / 0.6000 (40 ep, 12 s) |" in lines
    )
    assert "| notmnist | 700 / 150 / 150 | - | 0.9000 / 0.8000 (40 ep, 12 s) |" in lines
    # a recipe run on part of the sets is compared with default on those sets
    assert "| mean |  | 0.1000 / 0.2000 (1 of 2 sets; default on them: 0.5000 / 0.6000) | 0.7000 / 0.7000 |" in lines
    assert "**default**: batch_norm True, early_stopping_monitor val_accuracy" in md
    # previous ran on one set of two: nothing to rank
    assert "Only **default** ran on every data set; the mean row compares each other recipe with it." in md


def test_the_text_recipe_table_uses_the_same_layout() -> None:
    def row(recipe: str, val: float) -> dict[str, Any]:
        return {
            "data_set": "cr",
            "recipe": recipe,
            "settings": {"wide_trainable": recipe != "default"},
            "items": {"train": 2100, "validation": 450, "test": 460},
            "recordings": None,
            "epochs_run": 11,
            "train_seconds": 17.2,
            "val_accuracy": val,
            "test_accuracy": 0.83,
        }

    recipes = {"wide table fine-tuned": {}, "default": {}}
    rows = [row("wide table fine-tuned", 0.82), row("default", 0.83)]
    md = render({"text_recipe": _result("text_recipe", {"recipes": recipes}, rows=rows)})
    assert "## Text training recipe (CPU)" in md
    assert "| cr | 2,100 / 450 / 460 | 0.8200 / 0.8300 (11 ep, 17 s) | 0.8300 / 0.8300 (11 ep, 17 s) |" in _lines(md)
    assert "**default** has the highest mean validation accuracy" in md


def test_recipe_rows_with_ece_show_it_and_the_verdict_names_the_best_calibrated() -> None:
    def row(recipe: str, val: float, ece: float) -> dict[str, Any]:
        return {
            "data_set": "flowers5",
            "recipe": recipe,
            "settings": {"label_smoothing": 0.1 if recipe == "default" else 0.0},
            "items": {"train": 2367, "validation": 535, "test": 543},
            "recordings": None,
            "epochs_run": 40,
            "train_seconds": 557.9,
            "val_accuracy": val,
            "test_accuracy": 0.69,
            "val_ece": ece,
            "test_ece": ece + 0.01,
        }

    recipes = {"default": {}, "default without smoothing": {}}
    rows = [row("default", 0.65, 0.035), row("default without smoothing", 0.66, 0.054)]
    md = render({"image_recipe": _result("image_recipe", {"recipes": recipes}, rows=rows)})
    assert (
        "| flowers5 | 2,367 / 535 / 543 | 0.6500 / 0.6900, ECE 0.035 / 0.045 (40 ep, 558 s) "
        "| 0.6600 / 0.6900, ECE 0.054 / 0.064 (40 ep, 558 s) |" in _lines(md)
    )
    assert "**default without smoothing** has the highest mean validation accuracy" in md
    assert "**default** has the lowest mean validation ECE and **default** the lowest mean internal test ECE" in md
