"""The compression stage: export fp32 ONNX, check parity, quantize to INT8, prune with tfmot (and quantize
the pruned model), evaluate every variant.

Every variant is measured on the validation split; ``compress.objective`` picks the served one among those
within ``max_accuracy_drop`` of fp32 there (select_served), and the test split scores only that one, once.

    >>> result = compress_model(trained, train, val, test, cfg, Path("out/artifacts"))  # doctest: +SKIP
    >>> result.served, result.variants["int8"]["bytes"]  # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compression.export import to_onnx
from compression.prune import prune_model
from compression.quantize import quantize_dynamic_int8, quantize_static_qdq
from serving.runtime import Classifier, make_session, measure_latency
from training.config import RunConfig
from training.data import Dataset
from training.evaluate import agreement, confusion, metrics, per_class
from training.features import to_arrays
from training.train import TrainedModel

log = logging.getLogger(__name__)


class ParityError(RuntimeError):
    """The ONNX export does not reproduce the Keras model; nothing is registered."""


@dataclass
class Compressed:
    """Artefacts written under ``directory`` and the evaluation of each variant."""

    directory: Path
    variants: dict[str, dict[str, Any]]
    served: str
    parity: dict[str, Any]
    per_class: dict[str, dict[str, Any]]  # the served variant's test metrics per class
    confusion: np.ndarray  # the served variant's test confusion matrix
    test_metrics: dict[str, Any]  # the served variant scored once on the test split

    def served_stats(self) -> dict[str, Any]:
        """The served variant's size and latency with its test metrics: what the gate compares."""
        return self.variants[self.served] | self.test_metrics


def _batch32(x: np.ndarray) -> np.ndarray:
    """32 rows for the batch-32 timing (repeated when the split holds fewer)."""
    return np.resize(x, (32, *x.shape[1:])) if len(x) else x


def evaluate_variant(
    path: Path, trained: TrainedModel, x: np.ndarray, y: np.ndarray, runs: int, threads: int = 0
) -> tuple[dict, np.ndarray]:
    """Size, metrics on (x, y) and latency (batch 1 and 32, ``threads`` ORT threads, 0 = all cores) of one
    ONNX file, plus its probabilities for x."""
    data = path.read_bytes()
    classifier = Classifier(make_session(data, device="cpu", threads=threads), trained.spec)
    probs = classifier.predict(x)
    b32 = measure_latency(classifier, _batch32(x), max(5, runs // 5)) if len(x) else {"p50": 0.0, "p95": 0.0}
    stats: dict[str, Any] = {
        "file": str(path.relative_to(path.parent.parent)),
        "bytes": len(data),
        "gzip_bytes": len(gzip.compress(data, compresslevel=9)),
        **metrics(probs, y),
        **{f"latency_ms_{k}": v for k, v in measure_latency(classifier, x[:1], runs).items()},
        **{f"latency_ms_b32_{k}": v for k, v in b32.items()},
        "throughput_per_s": round(32_000 / b32["p50"], 1) if b32["p50"] else 0.0,
        "threads": threads or os.cpu_count() or 1,
    }
    return stats, probs


def check_parity(keras_probs: np.ndarray, onnx_probs: np.ndarray, tolerance: float) -> dict[str, Any]:
    diff = float(np.max(np.abs(keras_probs - onnx_probs))) if len(keras_probs) else 0.0
    result = {"max_abs_diff": diff, "tolerance": tolerance, "top1_agreement": agreement(keras_probs, onnx_probs)}
    if diff > tolerance:
        raise ParityError(
            f"fp32 ONNX probabilities differ from Keras by up to {diff:.2e} (tolerance {tolerance:.0e}); "
            "the export is wrong — check for custom layers or unsupported ops"
        )
    return result


def select_served(
    variants: dict[str, dict[str, Any]],
    max_drop: float,
    objective: str = "balanced",
    latency_batch: int = 1,
    slack: float = 0.05,
) -> str:
    """The served variant among those within ``max_drop`` accuracy of fp32 (fp32 always qualifies).

    ``smallest``: fewest gzip bytes (what pruning buys, and what a download costs). ``fastest``: lowest
    p50 latency at ``latency_batch`` (1 or 32). ``balanced``: the smallest variant that is not slower than
    fp32 at batch 1 or 32 (within ``slack``, timing noise) - a smaller model that serves slower is no gain.
    """
    fp32 = variants["fp32"]
    floor = fp32["accuracy"] - max_drop - 1e-9
    eligible = [name for name, v in variants.items() if v["accuracy"] >= floor]
    if objective == "fastest":
        key = "latency_ms_p50" if latency_batch == 1 else "latency_ms_b32_p50"
        return min(eligible, key=lambda name: variants[name].get(key, 0.0))
    if objective == "balanced":
        eligible = [
            name
            for name in eligible
            if all(
                variants[name].get(k, 0.0) <= fp32.get(k, 0.0) * (1 + slack)
                for k in ("latency_ms_p50", "latency_ms_b32_p50")
            )
        ] or ["fp32"]
    return min(eligible, key=lambda name: (variants[name]["gzip_bytes"], variants[name]["bytes"]))


def _quantize(source: Path, out: Path, trained: TrainedModel) -> str:
    """INT8 by the method that suits the model: static QDQ for images, dynamic for texts; returns it."""
    if trained.spec.kind == "image":
        log.info("quantizing %s to INT8 (static QDQ, %d calibration images)", source.name, len(trained.calibration))
        quantize_static_qdq(source, out, trained.calibration)
        return "static_qdq"
    log.info("quantizing %s to INT8 (dynamic)", source.name)
    quantize_dynamic_int8(source, out)
    return "dynamic"


def _quantized_parity(fp32_probs: np.ndarray, probs: np.ndarray, stats: dict[str, Any], fp32: dict) -> dict:
    """Quantized and pruned variants are judged at task level: top-1 agreement with fp32 and metric change."""
    return {
        "top1_agreement": agreement(fp32_probs, probs),
        "accuracy_change": round(stats["accuracy"] - fp32["accuracy"], 6),
    }


def _pruned_variants(
    trained: TrainedModel, train: Dataset, cfg: RunConfig, directory: Path, x: np.ndarray, y: np.ndarray
) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray], dict[str, str]]:
    """The ``pruned`` and ``pruned_int8`` variants asked for in ``compress.variants``: their stats and
    probabilities on (x, y), and the reason for each one that could not be made."""
    wanted = [v for v in cfg.compress.variants if v in ("pruned", "pruned_int8")]
    if not wanted:
        return {}, {}, {}
    try:
        pruned = prune_model(trained, train, cfg)
    except ValueError as exc:
        return {}, {}, dict.fromkeys(wanted, str(exc))
    onnx_path = to_onnx(pruned.model, trained.spec, directory / "pruned.onnx")
    stats, probs = evaluate_variant(onnx_path, trained, x, y, cfg.compress.latency_runs, cfg.compress.threads)
    diff = float(np.max(np.abs(pruned.model.predict(x, verbose=0, batch_size=256) - probs))) if len(x) else 0.0
    if diff > cfg.compress.parity_tolerance:
        onnx_path.unlink()
        return {}, {}, dict.fromkeys(wanted, f"pruned ONNX differs from its Keras model by {diff:.2e}")
    common = {"sparsity": round(pruned.sparsity, 4), "pruned_layers": len(pruned.layers)}
    stats_by, probs_by = {"pruned": stats | common | {"method": "tfmot_magnitude"}}, {"pruned": probs}
    if "pruned_int8" in wanted:
        quantized = directory / "pruned_int8.onnx"
        method = _quantize(onnx_path, quantized, trained)
        q_stats, q_probs = evaluate_variant(quantized, trained, x, y, cfg.compress.latency_runs, cfg.compress.threads)
        stats_by["pruned_int8"], probs_by["pruned_int8"] = (
            q_stats | common | {"method": f"tfmot_magnitude+{method}"},
            q_probs,
        )
    if "pruned" not in wanted:
        onnx_path.unlink()  # only its INT8 form was asked for; the version keeps only what it lists
        del stats_by["pruned"], probs_by["pruned"]
    return stats_by, probs_by, {}


def compress_model(
    trained: TrainedModel, train: Dataset, val: Dataset, test: Dataset, cfg: RunConfig, directory: Path
) -> Compressed:
    """Write the variants, spec and Keras model under ``directory`` (emptied first: everything in it
    becomes part of the stored version). Every variant is measured on the validation split, which picks
    the served one; the test split then scores that variant once, for the report and the gate. Pruned
    variants fine-tune on ``train``."""
    shutil.rmtree(directory, ignore_errors=True)
    variants_dir = directory / "variants"
    variants_dir.mkdir(parents=True, exist_ok=True)
    # A split too small to hold validation items falls back to the test split (and says so in the report).
    split = "validation" if len(val) else "test"
    x, y = to_arrays(val if len(val) else test, trained.spec)
    c = cfg.compress

    log.info("exporting fp32 ONNX")
    fp32 = to_onnx(trained.model, trained.spec, variants_dir / "fp32.onnx")
    keras_probs = trained.model.predict(x, verbose=0, batch_size=256)
    stats, fp32_probs = evaluate_variant(fp32, trained, x, y, c.latency_runs, c.threads)
    parity: dict[str, Any] = {"fp32": check_parity(keras_probs, fp32_probs, c.parity_tolerance)}
    variants = {"fp32": stats | {"method": "tf2onnx", "sparsity": 0.0}}
    probs = {"fp32": fp32_probs}

    int8 = variants_dir / "int8.onnx"
    method = _quantize(fp32, int8, trained)
    stats, probs["int8"] = evaluate_variant(int8, trained, x, y, c.latency_runs, c.threads)
    variants["int8"] = stats | {"method": method, "sparsity": 0.0}

    pruned_stats, pruned_probs, skipped = _pruned_variants(trained, train, cfg, variants_dir, x, y)
    variants |= pruned_stats
    probs |= pruned_probs
    for name in variants:
        variants[name]["split"] = split
        if name != "fp32":
            parity[name] = _quantized_parity(fp32_probs, probs[name], variants[name], variants["fp32"])
    for name, reason in skipped.items():
        log.warning("variant %s skipped: %s", name, reason)
        parity[name] = {"skipped": reason}
    served = select_served(variants, c.max_accuracy_drop, c.objective, c.latency_batch, c.latency_slack)
    for name, v in variants.items():
        log.info(
            "variant %s: %d bytes (%d gzipped), sparsity %.2f, %s accuracy %.4f, macro-F1 %.4f, p50 %.3f ms",
            name,
            v["bytes"],
            v["gzip_bytes"],
            v["sparsity"],
            split,
            v["accuracy"],
            v["macro_f1"],
            v["latency_ms_p50"],
        )
    x_test, y_test = to_arrays(test, trained.spec)
    served_path = directory / variants[served]["file"]
    test_probs = Classifier(make_session(served_path.read_bytes(), device="cpu"), trained.spec).predict(x_test)
    test_metrics = metrics(test_probs, y_test)
    log.info(
        "serving variant %s: test accuracy %.4f, macro-F1 %.4f",
        served,
        test_metrics["accuracy"],
        test_metrics["macro_f1"],
    )
    (directory / "spec.json").write_text(json.dumps(trained.spec.to_dict(), indent=2), encoding="utf-8")
    (directory / "keras").mkdir(exist_ok=True)
    trained.model.save(directory / "keras" / "model.keras")
    return Compressed(
        directory=directory,
        variants=variants,
        served=served,
        parity=parity,
        per_class=per_class(test_probs, y_test, trained.spec.labels),
        confusion=confusion(test_probs, y_test, len(trained.spec.labels)),
        test_metrics=test_metrics,
    )
