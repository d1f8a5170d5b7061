"""The compression stage: export fp32 ONNX, check parity, quantize to INT8, evaluate every variant.

The served variant is the smallest one whose test accuracy is within ``max_accuracy_drop`` of fp32.

    >>> result = compress_model(trained, test, cfg.compress, Path("out/artifacts"))  # doctest: +SKIP
    >>> result.served, result.variants["int8"]["bytes"]  # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compression.export import to_onnx
from compression.quantize import quantize_dynamic_int8, quantize_static_qdq
from serving.runtime import Classifier, make_session, measure_latency
from training.config import CompressConfig
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


def evaluate_variant(
    path: Path, trained: TrainedModel, x: np.ndarray, y: np.ndarray, runs: int
) -> tuple[dict, np.ndarray]:
    """Size, metrics and latency of one ONNX file, plus its test probabilities."""
    data = path.read_bytes()
    classifier = Classifier(make_session(data, device="cpu"), trained.spec)
    probs = classifier.predict(x)
    stats: dict[str, Any] = {
        "file": str(path.relative_to(path.parent.parent)),
        "bytes": len(data),
        "gzip_bytes": len(gzip.compress(data, compresslevel=9)),
        **metrics(probs, y),
        **{f"latency_ms_{k}": v for k, v in measure_latency(classifier, x[:1], runs).items()},
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


def select_served(variants: dict[str, dict[str, Any]], max_drop: float) -> str:
    """Smallest variant within ``max_drop`` accuracy of fp32 (fp32 itself always qualifies)."""
    floor = variants["fp32"]["accuracy"] - max_drop - 1e-9
    eligible = [name for name, v in variants.items() if v["accuracy"] >= floor]
    return min(eligible, key=lambda name: variants[name]["bytes"])


def compress_model(trained: TrainedModel, test: Dataset, cfg: CompressConfig, directory: Path) -> Compressed:
    """Write the variants, spec and Keras model under ``directory`` (emptied first: everything in it
    becomes part of the stored version) and evaluate each variant on ``test``."""
    shutil.rmtree(directory, ignore_errors=True)
    variants_dir = directory / "variants"
    variants_dir.mkdir(parents=True, exist_ok=True)
    x_test, y_test = to_arrays(test, trained.spec)

    log.info("exporting fp32 ONNX")
    fp32 = to_onnx(trained.model, trained.spec, variants_dir / "fp32.onnx")
    keras_probs = trained.model.predict(x_test, verbose=0, batch_size=256)
    stats, fp32_probs = evaluate_variant(fp32, trained, x_test, y_test, cfg.latency_runs)
    parity = {"fp32": check_parity(keras_probs, fp32_probs, cfg.parity_tolerance)}
    variants = {"fp32": stats}

    int8 = variants_dir / "int8.onnx"
    if trained.spec.kind == "image":
        calibration = trained.calibration
        log.info("quantizing to INT8 (static QDQ, %d calibration images)", len(calibration))
        quantize_static_qdq(fp32, int8, calibration)
        variants["int8"] = {"method": "static_qdq"}
    else:
        log.info("quantizing to INT8 (dynamic)")
        quantize_dynamic_int8(fp32, int8)
        variants["int8"] = {"method": "dynamic"}
    stats, int8_probs = evaluate_variant(int8, trained, x_test, y_test, cfg.latency_runs)
    variants["int8"].update(stats)
    variants["fp32"]["method"] = "tf2onnx"
    # Quantized variants are judged at task level: top-1 agreement with fp32 and metric change.
    parity["int8"] = {
        "top1_agreement": agreement(fp32_probs, int8_probs),
        "accuracy_change": round(variants["int8"]["accuracy"] - variants["fp32"]["accuracy"], 6),
    }
    served = select_served(variants, cfg.max_accuracy_drop)
    for name, v in variants.items():
        log.info(
            "variant %s: %d bytes (%d gzipped), accuracy %.4f, macro-F1 %.4f, p50 %.3f ms",
            name,
            v["bytes"],
            v["gzip_bytes"],
            v["accuracy"],
            v["macro_f1"],
            v["latency_ms_p50"],
        )
    log.info("serving variant %s", served)
    served_probs = {"fp32": fp32_probs, "int8": int8_probs}[served]
    (directory / "spec.json").write_text(json.dumps(trained.spec.to_dict(), indent=2), encoding="utf-8")
    (directory / "keras").mkdir(exist_ok=True)
    trained.model.save(directory / "keras" / "model.keras")
    return Compressed(
        directory=directory,
        variants=variants,
        served=served,
        parity=parity,
        per_class=per_class(served_probs, y_test, trained.spec.labels),
        confusion=confusion(served_probs, y_test, len(trained.spec.labels)),
    )
