"""The real Prefect retrain flow, in-process: report contract, gate on the second run, dirt counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving.store import ModelStore
from tests.conftest import TINY_CONFIG, add_dirt, make_image_folder, make_texts, write_csv

REPORT_KEYS = {"task", "model", "promoted", "gate", "data", "variants", "served_variant"}
DATA_KEYS = {"rows_read", "rows_kept", "duplicates_removed", "unreadable_skipped", "empty_skipped", "classes"}
VARIANT_KEYS = {
    "bytes", "gzip_bytes", "sparsity", "accuracy", "macro_f1", "latency_ms_p50", "latency_ms_p95",
    "latency_ms_b32_p50", "latency_ms_b32_p95", "throughput_per_s", "threads", "method", "split",
}  # fmt: skip
TRAINING_KEYS = {
    "epochs_run", "best_epoch", "stopped_early", "optimizer", "lr_schedule", "train_seconds",
    "examples_per_second", "device", "model", "parameters", "class_weights",
}  # fmt: skip


def check_report_contract(report: dict) -> None:
    assert set(report) >= REPORT_KEYS
    assert set(report["model"]) >= {"name", "version"}
    assert isinstance(report["promoted"], bool) and isinstance(report["gate"], str)
    assert set(report["data"]) >= DATA_KEYS
    assert "fp32" in report["variants"] and report["served_variant"] in report["variants"]
    for v in report["variants"].values():
        assert set(v) >= VARIANT_KEYS
    assert set(report["training"]) >= TRAINING_KEYS
    assert report["metrics"]["split"] == "test" and report["metrics"]["examples"] > 0
    # calibration: the served variant's test ECE with the graph's calibration map and without, and the map
    assert {"ece", "ece_uncalibrated", "temperature", "link"} <= set(report["metrics"])
    for key in ("temperature", "link"):
        assert report["training"]["calibration"][key] == report["metrics"][key]
    assert all({"ece", "ece_uncalibrated"} <= set(v) for v in report["variants"].values())
    per_class = report["metrics"]["per_class"]
    assert set(per_class) == set(report["data"]["classes"])
    assert all(set(m) == {"precision", "recall", "f1", "support"} for m in per_class.values())
    peaks = report["resources"]["peak_rss_mib"]  # peak memory per stage, measured
    assert {"ingest-and-clean", "split", "compress"} <= set(peaks) and all(mib > 50 for mib in peaks.values())
    # and per compression variant, inside the compress stage
    assert {f"compress/{name}" for name in report["variants"]} <= set(peaks)
    assert report["resources"]["run_peak_rss_mib"] == max(peaks.values())


@pytest.mark.slow
def test_text_flow_promotes_first_then_gates_a_worse_model(tmp_path: Path, prefect_server: None) -> None:
    from flows.retrain import retrain

    data = write_csv(tmp_path / "t.csv", make_texts(50) + [("", "food")])
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_CONFIG)
    store = tmp_path / "store"

    first = retrain(task="text", data=str(data), out=str(tmp_path / "run1"), store=str(store), config=str(cfg))
    check_report_contract(first)
    assert first["promoted"] and first["model"]["version"] == "v0001"
    assert first["data"]["empty_skipped"] == 1 and first["data"]["rows_kept"] == 150
    assert json.loads((tmp_path / "run1" / "report.json").read_text()) == first
    assert (tmp_path / "run1" / "plots" / "reliability.png").stat().st_size > 1000
    # the version stores its training summary of the drift signals, hashed like its other files
    stored = ModelStore(store)
    baseline = stored.drift_baseline(stored.get("text", "v0001"))
    assert baseline is not None and set(baseline["signals"]) == {"score", "text_chars", "unknown_share"}
    assert sum(baseline["signals"]["text_chars"]["counts"]) == baseline["items"]["inputs"] > 100
    assert sum(baseline["signals"]["score"]["counts"]) == first["metrics"]["examples"]

    worse = tmp_path / "worse.yaml"
    # one epoch at a tiny rate and no linear half (which alone would match the first model): a worse model
    worse.write_text(
        TINY_CONFIG.replace("learning_rate: 0.01", "learning_rate: 0.00001")
        .replace("epochs: 12", "epochs: 1")
        .replace("max_length: 16, dropout: 0.1}", "max_length: 16, dropout: 0.1, wide: false}")
    )
    second = retrain(task="text", data=str(data), out=str(tmp_path / "run2"), store=str(store), config=str(worse))
    assert not second["promoted"] and "not promoted" in second["gate"]
    assert second["model"]["version"] == "v0002"
    assert ModelStore(store).production("text") == "v0001"  # stored, reported, not served


@pytest.mark.slow
def test_image_flow_counts_dirt_in_mixed_sizes_and_modes(tmp_path: Path, prefect_server: None) -> None:
    from flows.retrain import retrain

    images = make_image_folder(tmp_path / "images", per_class=25)
    dirt = add_dirt(images)
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_CONFIG)
    report = retrain(
        task="image", data=str(images), out=str(tmp_path / "run"), store=str(tmp_path / "store"), config=str(cfg)
    )
    check_report_contract(report)
    for key, count in dirt.items():
        assert report["data"][key] == count
    assert report["data"]["rows_kept"] == 75
    assert report["variants"]["fp32"]["accuracy"] >= 0.8
    assert report["spec"]["channels"] == 3  # the data has colour images
    text = (tmp_path / "run" / "compression_report.md").read_text()
    assert all(f"| {name}" in text for name in report["variants"])
    assert (tmp_path / "run" / "plots" / "variants_size.png").stat().st_size > 1000

    # kiln compress: the stored model compressed again under other settings becomes a derived version
    from flows.compress import compress_version

    override = tmp_path / "compress.yaml"
    override.write_text("compress: {sparsity: 0.5, variants: [int8, pruned_int8], latency_runs: 3}")
    derived = compress_version("image", "v0001", str(tmp_path / "store"), str(tmp_path / "c"), str(override))
    check_report_contract(derived)
    assert derived["model"]["version"] == "v0002" and derived["derived_from"] == {"task": "image", "version": "v0001"}
    assert set(derived["variants"]) == {"fp32", "int8", "pruned_int8"}
    assert abs(derived["variants"]["pruned_int8"]["sparsity"] - 0.5) < 0.05
    assert derived["config"]["compress"]["sparsity"] == 0.5
    assert derived["config"]["image_model"] == report["config"]["image_model"]  # the rest is the version's own
    assert derived["training"] == report["training"]
    # the same model on the same validation split: fp32 scores exactly as it did
    assert derived["variants"]["fp32"]["accuracy"] == report["variants"]["fp32"]["accuracy"]
    assert (tmp_path / "c" / "compression_report.md").is_file()


@pytest.mark.slow
def test_label_change_stops_before_training_and_imbalance_is_weighted(tmp_path: Path, prefect_server: None) -> None:
    from flows.retrain import retrain
    from training.data.dataset import DataError

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_CONFIG)
    store = tmp_path / "store"
    rows = [r for r in make_texts(40) if r[1] != "food"] + [r for r in make_texts(40) if r[1] == "food"][:10]
    first = retrain(
        task="text",
        data=str(write_csv(tmp_path / "a.csv", rows)),
        out=str(tmp_path / "run1"),
        store=str(store),
        config=str(cfg),
    )
    # 40 vs 10 examples: balanced class weights, said in the report
    assert first["data"]["summary"]["imbalance"]["class_weights"] == "balanced"
    weights = first["training"]["class_weights"]
    assert weights["food"] > 2 * weights["sports"]
    run_dir = tmp_path / "run1"
    assert (run_dir / "data_report.md").exists() and (run_dir / "quarantine.csv").exists()
    for produced in ("plots/classes.png", "plots/learning_curves.png", "plots/confusion_matrix.png", "history.csv"):
        assert (run_dir / produced).exists(), produced
    assert any((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert not (run_dir / "checkpoints").exists() or not any((run_dir / "checkpoints").iterdir())

    changed = write_csv(tmp_path / "b.csv", make_texts(20) + [(f"a new song {w}", "music") for w in "abcdefgh"])
    with pytest.raises(DataError, match=r"new label\(s\) \['music'\].*--allow-label-change"):
        retrain(task="text", data=str(changed), out=str(tmp_path / "run2"), store=str(store), config=str(cfg))
    assert ModelStore(store).versions("text") == ["v0001"]  # stopped before training: nothing registered
    assert not (tmp_path / "run2" / "artifacts").exists()
    assert (tmp_path / "run2" / "quarantine.csv").exists() and (tmp_path / "run2" / "data_report.md").exists()

    allowed = retrain(
        task="text",
        data=str(changed),
        out=str(tmp_path / "run3"),
        store=str(store),
        config=str(cfg),
        allow_label_change=True,
    )
    assert allowed["data"]["label_change"] == {"added": ["music"], "removed": []}
    assert ModelStore(store).versions("text") == ["v0001", "v0002"]


@pytest.mark.slow
def test_run_with_trials_tunes_then_trains_the_best_config(tmp_path: Path, prefect_server: None) -> None:
    from flows.retrain import retrain
    from training.runs import read_run_file

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_CONFIG.replace("epochs: 12", "epochs: 3"))
    data = write_csv(tmp_path / "t.csv", make_texts(30))
    run = tmp_path / "run"
    report = retrain(task="text", data=str(data), out=str(run), store=str(tmp_path / "s"), config=str(cfg), trials=2)
    assert report["tuning"]["trials"] == 2 and "best_params" in report["tuning"]
    saved = read_run_file(run)
    assert saved["params"]["tuned"] is True  # --resume would continue with the tuned config
    best = report["tuning"]["best_params"]
    assert report["config"]["train"]["learning_rate"] == pytest.approx(best["train.learning_rate"])
    assert (run / "tuning" / "best_config.yaml").exists() and (run / "tuning" / "trials.csv").exists()


@pytest.mark.slow
def test_a_failure_after_training_never_changes_production(
    tmp_path: Path, prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.retrain as retrain_module
    from flows.steps import as_step
    from serving.runtime import Classifier
    from serving.store import StoreError

    data = write_csv(tmp_path / "t.csv", make_texts(40))
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_CONFIG)
    store = ModelStore(tmp_path / "store")
    args = {"task": "text", "data": str(data), "store": str(store.root), "config": str(cfg)}
    retrain_module.retrain(out=str(tmp_path / "run1"), **args)
    served = Classifier.from_version(store.production_version("text"), device="cpu")
    probe = served.prepare_texts(["the soup was great", "the storm is back"])
    before = served.predict(probe)

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("injected: the disk filled up during compression")

    monkeypatch.setattr(retrain_module, "compress_step", as_step(broken, "compress"))
    with pytest.raises(RuntimeError, match="injected"):
        retrain_module.retrain(out=str(tmp_path / "run2"), **args)
    assert store.production("text") == "v0001" and store.versions("text") == ["v0001"]
    again = Classifier.from_version(store.production_version("text"), device="cpu")
    assert (again.predict(probe) == before).all()  # the served model is the one it was

    # one run per task and store: a second one stops at once, naming the first
    busy = pytest.raises(StoreError, match="another run is already training or compressing the text model")
    with store.exclusive_run("text"), busy:
        retrain_module.retrain(out=str(tmp_path / "run3"), **args)
    assert store.versions("text") == ["v0001"]
