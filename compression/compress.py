"""The compression stage: export fp32 ONNX and check its parity, then make the other variants asked for in
``compress.variants`` (ORT INT8, tfmot pruning, pruning + INT8, tfmot QAT, prune-preserving QAT, FP16),
check and optimise every file, and measure each on the validation split.

``compress.objective`` picks the served variant among those within ``max_accuracy_drop`` of fp32 there
(select_served); the test split then scores every variant once (its ``test`` block), after the choice and
without a say in it: the served one's scores go to the report and the gate. A variant that cannot be made
for a model is reported as skipped with the reason; only a broken fp32 export stops the run.

    >>> result = compress_model(trained, train, val, test, cfg, Path("out/artifacts"))  # doctest: +SKIP
    >>> result.served, result.variants["int8"]["bytes"]  # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compression.export import to_onnx, with_calibration, without_calibration
from compression.finetune import NotApplicable
from compression.prune import prune_model
from compression.qat import quantize_aware
from compression.quantize import (
    check_and_optimize,
    quantize_dynamic_int8,
    quantize_embeddings_int8,
    quantize_static_qdq,
    store_weights_int8,
    to_fp16,
)
from serving.runtime import OFFLINE_BATCH, Classifier, interleaved_latency, make_session
from training.config import RETRAINED_VARIANTS, CompressConfig, RunConfig
from training.data.dataset import Dataset
from training.data.features import to_arrays
from training.fit.build import save_for_inference
from training.fit.train import TrainedModel
from training.kinds import kind_of
from training.memory import metered
from training.models.calibration import calibration_metrics, reliability
from training.release.evaluate import agreement, confusion, metrics, per_class
from training.tf_env import keras

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
    spec: dict[str, Any] = field(default_factory=dict)  # the preprocessing spec, as stored with the version
    reliability: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # test, with and without T
    test_scores: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)  # served top-1, test split

    def served_stats(self) -> dict[str, Any]:
        """The served variant's size and latency with its test metrics: what the gate compares."""
        return self.variants[self.served] | self.test_metrics


def _batch32(x: np.ndarray) -> np.ndarray:
    """32 rows for the batch-32 timing (repeated when the split holds fewer)."""
    return np.resize(x, (32, *x.shape[1:])) if len(x) else x


def evaluate_variant(
    path: Path,
    trained: TrainedModel,
    x: np.ndarray,
    y: np.ndarray,
    threads: int = 0,
    device: str = "cpu",
) -> tuple[dict, np.ndarray]:
    """Size and metrics on (x, y) with calibration error (with the graph's calibration map and without) of one ONNX
    file, plus its probabilities for x. Latency is timed separately (``time_variants``), side by side."""
    data = path.read_bytes()
    scores, probs, _ = score_graph(data, trained.spec, x, y, device, threads)
    stats: dict[str, Any] = {
        "file": str(path.relative_to(path.parent.parent)),
        "bytes": len(data),
        "gzip_bytes": len(gzip.compress(data, compresslevel=9)),
        **scores,
        "threads": threads or os.cpu_count() or 1,
        "graph_optimization": "basic",
    }
    return stats, probs


def score_graph(
    data: bytes, spec: Any, x: np.ndarray, y: np.ndarray, device: str = "cpu", threads: int = 0
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Accuracy, macro-F1 and calibration error on (x, y) of one ONNX graph, with its calibration map and
    without it, and both sets of probabilities (served, then uncalibrated)."""
    probs = Classifier(make_session(data, device=device, threads=threads), spec).predict_all(x)
    raw = Classifier(make_session(without_calibration(data), device=device, threads=threads), spec).predict_all(x)
    return metrics(probs, y) | calibration_metrics(probs, raw, y), probs, raw


def score_unseen(
    variants: dict[str, dict[str, Any]],
    served: str,
    directory: Path,
    spec: Any,
    x: np.ndarray,
    y: np.ndarray,
    device: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Score every variant once on the test split, after the served one was chosen (the choice never reads
    these): each variant's ``test`` block (accuracy, macro-F1, ECE with and without the map, top-1 agreement
    with fp32). After a refit the model has learnt the validation items, so only these say how a variant does
    on new items and how calibrated its scores are. Returns the served variant's probabilities, with the map
    and without."""
    reference: np.ndarray | None = None
    kept: tuple[np.ndarray, np.ndarray] = (np.zeros((0, len(spec.labels))),) * 2
    for name in sorted(variants, key=lambda n: n != "fp32"):  # fp32 first: the others agree with it or not
        scores, probs, raw = score_graph((directory / variants[name]["file"]).read_bytes(), spec, x, y, device)
        reference = probs if reference is None else reference
        variants[name]["test"] = scores | {"top1_agreement": agreement(reference, probs) if len(y) else 1.0}
        if name == served:
            kept = (probs, raw)
    return kept


def time_variants(
    paths: dict[str, Path], spec: Any, x: np.ndarray, runs: int, threads: int = 0, device: str = "cpu"
) -> dict[str, dict[str, float]]:
    """p50/p95 latency at batch 1 and 32 (``threads`` ORT threads, 0 = all cores) and batch-32 throughput of each
    ONNX file, timed in interleaved rounds (serving.runtime.interleaved_latency): which variant is faster is
    what selection asks, and timings taken minutes apart on a shared machine answer it by the minute."""
    if not len(x):
        zero = {"p50": 0.0, "p95": 0.0}
        return {name: _latency_stats(zero, zero) for name in paths}
    classifiers = {
        name: Classifier(make_session(path.read_bytes(), device=device, threads=threads), spec)
        for name, path in paths.items()
    }
    b1 = interleaved_latency(classifiers, x[:1], runs)
    b32 = interleaved_latency(classifiers, _batch32(x), max(5, runs // 2))
    return {name: _latency_stats(b1[name], b32[name]) for name in paths}


def _latency_stats(b1: dict[str, float], b32: dict[str, float]) -> dict[str, float]:
    return {
        **{f"latency_ms_{k}": v for k, v in b1.items()},
        **{f"latency_ms_b32_{k}": v for k, v in b32.items()},
        "throughput_per_s": round(32_000 / b32["p50"], 1) if b32["p50"] else 0.0,
    }


def check_parity(keras_probs: np.ndarray, onnx_probs: np.ndarray, tolerance: float) -> dict[str, Any]:
    diff = float(np.max(np.abs(keras_probs - onnx_probs))) if len(keras_probs) else 0.0
    result = {"max_abs_diff": diff, "tolerance": tolerance, "top1_agreement": agreement(keras_probs, onnx_probs)}
    if diff > tolerance:
        raise ParityError(
            f"fp32 ONNX probabilities differ from Keras by up to {diff:.2e} (tolerance {tolerance:.0e}); "
            "the export is wrong — check for custom layers or unsupported ops"
        )
    return result


def _not_slower(v: dict[str, Any], fp32: dict[str, Any], slack: float, floor_ms: float, floor_b32_ms: float) -> bool:
    floors = {"latency_ms_p50": floor_ms, "latency_ms_b32_p50": floor_b32_ms}
    return all(v.get(k, 0.0) <= fp32.get(k, 0.0) * (1 + slack) + floor for k, floor in floors.items())


def allowed_drop(max_drop: float, items: int) -> float:
    """The accuracy drop (and share of disagreements with fp32) a variant may show on ``items`` validation
    items: ``max_drop``, or one item where that is more. One item is the finest change a split can show; on 95
    items, a 1-point budget would demand that a variant agree with fp32 on every one of them, and INT8, which
    changed accuracy on unseen items by -0.08 points on average across the development sets, would never ship."""
    return max(max_drop, 1.0 / items) if items else max_drop


def select_served(
    variants: dict[str, dict[str, Any]],
    max_drop: float,
    objective: str = "balanced",
    latency_batch: int = 1,
    slack: float = 0.05,
    floor_ms: float = 0.0,
    device: str = "cpu",
    agreement: dict[str, float] | None = None,
    floor_b32_ms: float | None = None,
    excluded: tuple[str, ...] = (),
) -> str:
    """The served variant among those within ``max_drop`` accuracy of fp32 (allowed_drop: at least one item;
    fp32 always qualifies) that run on ``device`` (fp16 is for cuda only) and, given ``agreement`` (each variant's
    top-1 agreement with fp32 on the same items), that disagree with fp32 on at most that share of them: after
    the refit the shipped model has seen the validation items, every variant scores nearly 1.0 on them, and
    only disagreement still shows what compression changed. ``excluded`` variants are never served (fp32
    always qualifies).

    ``smallest``: fewest gzip bytes (what pruning buys, and what a download costs). ``fastest``: lowest
    p50 latency at ``latency_batch`` (1 or 32). ``balanced``: the smallest variant that is not slower than
    fp32 at batch 1 or 32 (within ``slack`` plus ``floor_ms`` at batch 1, ``floor_b32_ms`` at batch 32 (default
    ``floor_ms``): what is noise next to a served request's own cost) - a smaller model that serves slower is no
    gain.
    """
    fp32 = variants["fp32"]
    drop = allowed_drop(max_drop, fp32.get("examples", 0))
    floor = fp32["accuracy"] - drop - 1e-9
    agrees = agreement or {}
    eligible = [
        name
        for name, v in variants.items()
        if v["accuracy"] >= floor
        and v.get("device", "any") in ("any", device)
        and (name == "fp32" or (name not in excluded and agrees.get(name, 1.0) >= 1.0 - drop - 1e-9))
    ]
    if objective == "fastest":
        key = "latency_ms_p50" if latency_batch == 1 else "latency_ms_b32_p50"
        return min(eligible, key=lambda name: variants[name].get(key, 0.0))
    if objective == "balanced":
        b32 = floor_ms if floor_b32_ms is None else floor_b32_ms
        eligible = [name for name in eligible if _not_slower(variants[name], fp32, slack, floor_ms, b32)] or ["fp32"]
    return min(eligible, key=lambda name: (variants[name]["gzip_bytes"], variants[name]["bytes"]))


@dataclass
class _Made:
    """One variant file, what made it, and (float variants) the Keras model it must reproduce."""

    path: Path
    info: dict[str, Any]
    reference: keras.Model | None = None
    measured: tuple[dict[str, Any], np.ndarray] | None = None  # already checked and evaluated


@dataclass
class _Builder:
    """Makes the variants of one trained model under ``directory``; x, y is the validation split."""

    trained: TrainedModel
    train: Dataset
    cfg: RunConfig
    directory: Path
    x: np.ndarray
    y: np.ndarray
    _pruned: Any = field(default=None, init=False)  # compression.prune.Pruned, made once when first needed
    # per exported file name: (the Keras model's probabilities on x, the graph's before its calibration)
    exported: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, init=False)

    def export(self, model: keras.Model, path: Path) -> Path:
        """An ONNX file of ``model`` with the run's calibration map built in (as every exported graph has).
        Both models' probabilities on x are kept first, for the parity checks: comparing after the map would
        need the logits back from float32 probabilities, which lose every logit gap beyond about 69."""
        to_onnx(model, self.trained.spec, path)
        if len(self.x):
            raw = self.probabilities(path)
            self.exported[path.name] = (model.predict(self.x, verbose=0, batch_size=OFFLINE_BATCH), raw)
        return with_calibration(path, self.trained.calibrated)

    def probabilities(self, path: Path) -> np.ndarray:
        """The served probabilities of the graph at ``path`` on x (calibration map included)."""
        return Classifier(make_session(path.read_bytes(), device="cpu"), self.trained.spec).predict_all(self.x)

    def measure(self, path: Path) -> tuple[dict[str, Any], np.ndarray]:
        c = self.cfg.compress
        check_and_optimize(path)
        return evaluate_variant(path, self.trained, self.x, self.y, c.threads, c.serving_device)

    def time(self, paths: dict[str, Path]) -> dict[str, dict[str, float]]:
        c = self.cfg.compress
        return time_variants(paths, self.trained.spec, self.x, c.latency_runs, c.threads, c.serving_device)

    def quantize(self, source: Path, out: Path) -> _Made:
        """INT8 of ``source`` by each method the task kind tries (static QDQ for convolutional models; for texts
        also dynamic, and INT8 embedding tables alone), keeping the one most faithful to ``source`` (``_pick_int8``)."""
        calibration = self.cfg.compress.calibration
        methods = kind_of(self.trained.spec.kind).int8_methods
        if methods == ("static",):
            log.info("quantizing %s to INT8 (static QDQ, %s calibration)", source.name, calibration)
            quantize_static_qdq(source, out, self.trained.calibration, calibration)
            return _Made(out, {"method": f"static_qdq_{calibration}"})
        log.info("quantizing %s to INT8 (%s; keeping the most faithful)", source.name, ", ".join(methods))
        reference = self.probabilities(source)
        candidates: dict[str, tuple[Path, tuple[dict[str, Any], np.ndarray]]] = {}
        for method in methods:
            path = out.with_name(f"{out.stem}.{method}.onnx")
            name = self._quantize_by(method, source, path)
            stats, probs = self.measure(path)
            candidates[name] = (path, (stats | fidelity(reference, probs), probs))
        timed = self.time(
            {name: path for name, (path, _) in candidates.items()} | {"fp32": self.directory / "fp32.onnx"}
        )
        for name, (_, (stats, _)) in candidates.items():
            stats |= timed[name]
        chosen = _pick_int8({name: stats for name, (_, (stats, _)) in candidates.items()}, timed["fp32"], self.cfg)
        for name, (path, _) in candidates.items():
            if name != chosen:
                path.unlink()
        path, (stats, probs) = candidates[chosen]
        path.replace(out)
        measured = ({k: v for k, v in stats.items() if k not in FIDELITY}, probs)
        measured[0]["file"] = str(out.relative_to(out.parent.parent))
        summary = {
            name: {k: stats[k] for k in ("accuracy", *FIDELITY, "latency_ms_p50", "latency_ms_b32_p50")}
            for name, (_, (stats, _)) in candidates.items()
        }
        return _Made(out, {"method": chosen, "int8_candidates": summary}, measured=measured)

    def _quantize_by(self, method: str, source: Path, out: Path) -> str:
        """Write ``source`` quantized by ``method`` (a task kind's int8_methods name) to ``out``; returns the
        name the report gives it."""
        calibration = self.cfg.compress.calibration
        if method == "static":
            quantize_static_qdq(source, out, self.trained.calibration, calibration)
            return f"static_qdq_{calibration}"
        if method == "dynamic":
            quantize_dynamic_int8(source, out)
            return "dynamic"
        if method == "embeddings":
            quantize_embeddings_int8(source, out)
            return "dynamic_embeddings"
        raise ValueError(f"unknown INT8 method {method!r}")

    def pruned(self) -> Any:
        if self._pruned is None:
            self._pruned = prune_model(self.trained, self.train, self.cfg)
        return self._pruned

    def pruned_info(self) -> dict[str, Any]:
        p = self.pruned()
        return {"sparsity": round(p.sparsity, 4), "pruned_layers": len(p.layers)}

    def make(self, name: str, fp32: Path) -> _Made:
        d = self.directory
        if name == "int8":
            return self.quantize(fp32, d / "int8.onnx")
        if name == "pruned":
            path = self.export(self.pruned().model, d / "pruned.onnx")
            return _Made(path, {"method": "tfmot_magnitude"} | self.pruned_info(), reference=self.pruned().model)
        if name == "pruned_int8":
            source = d / "pruned.onnx"
            made_here = not source.exists()
            if made_here:  # only the INT8 form was asked for: export the pruned model just for it
                self.export(self.pruned().model, source)
            made = self.quantize(source, d / "pruned_int8.onnx")
            if made_here:
                source.unlink()
            made.info = made.info | {"method": f"tfmot_magnitude+{made.info['method']}"} | self.pruned_info()
            return made
        if name in ("qat", "pruned_qat"):
            base = self.pruned().model if name == "pruned_qat" else self.trained.model
            result = quantize_aware(
                base, self.train, self.trained.spec, self.cfg, self.trained.calibration, name == "pruned_qat"
            )
            path = self.export(result.model, d / f"{name}.onnx")
            rewritten = store_weights_int8(path)
            info: dict[str, Any] = {"method": "tfmot_qat" + ("_prune_preserve" if name == "pruned_qat" else "")}
            info |= {"qat_layers": len(result.layers), "qat_coverage": round(result.coverage, 4)}
            info |= {"int8_weights": rewritten, "keras_reference": result.model}
            return _Made(path, info | (self.pruned_info() if name == "pruned_qat" else {}))
        if name == "fp16":
            return _Made(to_fp16(fp32, d / "fp16.onnx"), {"method": "fp16", "device": "cuda"})
        raise ValueError(f"unknown variant {name!r}")


FIDELITY = ("top1_agreement", "mean_abs_diff")  # an INT8 candidate against the graph it quantizes


def fidelity(reference: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """How closely ``probs`` reproduce ``reference`` on the same items: top-1 agreement and the mean total
    variation distance between the two probability rows (half the summed absolute differences)."""
    distance = 0.5 * np.abs(probs - reference).sum(axis=1) if len(reference) else np.zeros(1)
    return {"top1_agreement": agreement(reference, probs), "mean_abs_diff": round(float(np.mean(distance)), 6)}


def _pick_int8(candidates: dict[str, dict[str, Any]], fp32: dict[str, Any], cfg: RunConfig) -> str:
    """The INT8 method to keep: among those within ``int8_equal_accuracy`` of the best validation accuracy and
    not slower than fp32 (the rule ``balanced`` serves by; all of them where none is), the most faithful to
    the graph it quantizes, then the smallest. After the refit every method scores nearly 1.0 on the validation
    items, while fidelity still shows what quantization changed; and choosing the fastest of near-equal
    methods let this machine's timing noise change the served model from one run to the next."""
    c = cfg.compress
    best = max(stats["accuracy"] for stats in candidates.values())
    equal = [name for name, s in candidates.items() if s["accuracy"] >= best - c.int8_equal_accuracy]
    floors = (c.latency_slack, c.latency_floor_ms, c.latency_floor_b32_ms)
    fast = [n for n in equal if _not_slower(candidates[n], fp32, *floors)]
    return min(
        fast or equal,
        key=lambda n: (
            -candidates[n]["top1_agreement"],
            candidates[n]["mean_abs_diff"],
            candidates[n]["gzip_bytes"],
        ),
    )


def _variant_parity(
    name: str, made: _Made, stats: dict, probs: np.ndarray, fp32: tuple[dict, np.ndarray], b: _Builder
) -> dict:
    """Float variants must reproduce their Keras model; quantized ones are judged at task level (top-1
    agreement with fp32 and metric change), QAT also against its own fake-quantized Keras model."""
    result = {
        "top1_agreement": agreement(fp32[1], probs),
        "accuracy_change": round(stats["accuracy"] - fp32[0]["accuracy"], 6),
    }
    reference = made.reference or made.info.get("keras_reference")
    if reference is not None and made.path.name in b.exported:
        keras_probs, graph_probs = b.exported[made.path.name]  # before the calibration went in
        result["keras_max_abs_diff"] = float(np.max(np.abs(keras_probs - graph_probs)))
        result["keras_top1_agreement"] = agreement(keras_probs, graph_probs)
        if made.reference is not None and result["keras_max_abs_diff"] > b.cfg.compress.parity_tolerance:
            raise ValueError(f"{name} ONNX differs from its Keras model by {result['keras_max_abs_diff']:.2e}")
    return result


def _build_variants(b: _Builder, fp32_path: Path, fp32: tuple[dict, np.ndarray]) -> tuple[dict, dict]:
    """Every variant in ``compress.variants``: stats, parity, and the reason for each that was skipped."""
    stats_by: dict[str, dict] = {}
    parity: dict[str, Any] = {}
    for name in b.cfg.compress.variants:
        try:
            with metered(f"compress/{name}"):  # its own peak in report.json; what it freed goes back after it
                made = b.make(name, fp32_path)
                stats, probs = made.measured or b.measure(made.path)
                parity[name] = _variant_parity(name, made, stats, probs, fp32, b)
        except NotApplicable as exc:
            parity[name] = {"skipped": str(exc)}
        except Exception as exc:  # one variant failing must not cost the run its other variants
            log.warning("variant %s could not be made", name, exc_info=True)
            parity[name] = {"skipped": f"{type(exc).__name__}: {exc}"}
        else:
            info = {k: v for k, v in made.info.items() if k != "keras_reference"}
            stats_by[name] = stats | {"sparsity": 0.0} | info
            continue
        log.warning("variant %s skipped: %s", name, parity[name]["skipped"])
        for leftover in b.directory.glob(f"{name}.*onnx"):  # its file and candidates, not pruned_int8's
            leftover.unlink()
    return stats_by, parity


UNJUDGED = (
    "not served: fine-tuned from a model that learnt from the validation items it is measured on, so agreeing "
    "with fp32 there says little about new items (compress.serve_retrained: true lets it compete)"
)


def _unjudged(variants: dict[str, dict[str, Any]], trained: TrainedModel, c: CompressConfig) -> tuple[str, ...]:
    """The fine-tuned variants that validation cannot judge: the shipped model learnt from validation (a refit)
    and ``compress.serve_retrained`` is off. Each gets the reason as ``not_served`` in its stats."""
    seen = trained.shipped.get("learnt_from", "training") != "training"
    names = tuple(n for n in RETRAINED_VARIANTS if n in variants) if seen and not c.serve_retrained else ()
    for name in names:
        variants[name]["not_served"] = UNJUDGED
    return names


def compress_model(
    trained: TrainedModel, train: Dataset, val: Dataset, test: Dataset, cfg: RunConfig, directory: Path
) -> Compressed:
    """Write the variants, spec and Keras model under ``directory`` (emptied first: everything in it
    becomes part of the stored version). Every variant is measured on the validation split, which picks
    the served one; the test split then scores every variant once (score_unseen), the served one for the
    report and the gate. Pruned and QAT variants fine-tune on ``train``."""
    shutil.rmtree(directory, ignore_errors=True)
    variants_dir = directory / "variants"
    variants_dir.mkdir(parents=True, exist_ok=True)
    # A split too small to hold validation items falls back to the test split (and says so in the report).
    split = "validation" if len(val) else "test"
    x, y = to_arrays(val if len(val) else test, trained.spec)
    c = cfg.compress
    builder = _Builder(trained, train, cfg, variants_dir, x, y)

    log.info("exporting fp32 ONNX")
    with metered("compress/fp32"):
        fp32_path = builder.export(trained.model, variants_dir / "fp32.onnx")
        keras_probs, graph_probs = builder.exported.get(fp32_path.name, (np.zeros((0, 1)), np.zeros((0, 1))))
        parity: dict[str, Any] = {"fp32": check_parity(keras_probs, graph_probs, c.parity_tolerance)}
        stats, fp32_probs = builder.measure(fp32_path)
    variants = {"fp32": stats | {"method": "tf2onnx", "sparsity": 0.0}}
    made, made_parity = _build_variants(builder, fp32_path, (variants["fp32"], fp32_probs))
    variants |= made
    parity |= made_parity
    timed = builder.time({name: directory / v["file"] for name, v in variants.items()})
    for name, v in variants.items():
        v |= timed[name] | {"split": split}
    unjudged = _unjudged(variants, trained, c)
    served = select_served(
        variants,
        c.max_accuracy_drop,
        c.objective,
        c.latency_batch,
        c.latency_slack,
        c.latency_floor_ms,
        c.serving_device,
        {name: p["top1_agreement"] for name, p in parity.items() if "top1_agreement" in p},
        floor_b32_ms=c.latency_floor_b32_ms,
        excluded=unjudged,
    )
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
    test_probs, raw_probs = score_unseen(variants, served, directory, trained.spec, x_test, y_test, c.serving_device)
    test_metrics = {k: v for k, v in variants[served]["test"].items() if k != "top1_agreement"}
    test_metrics["temperature"] = trained.temperature
    test_metrics["link"] = trained.calibrated.get("link", "temperature")
    log.info(
        "serving variant %s: test accuracy %.4f, macro-F1 %.4f, ECE %.4f (%.4f without calibration)",
        served,
        test_metrics["accuracy"],
        test_metrics["macro_f1"],
        test_metrics["ece"],
        test_metrics["ece_uncalibrated"],
    )
    (directory / "spec.json").write_text(json.dumps(trained.spec.to_dict(), indent=2), encoding="utf-8")
    (directory / "keras").mkdir(exist_ok=True)
    save_for_inference(trained.model, directory / "keras" / "model.keras")
    return Compressed(
        directory=directory,
        variants=variants,
        served=served,
        parity=parity,
        per_class=per_class(test_probs, y_test, trained.spec.labels),
        confusion=confusion(test_probs, y_test, len(trained.spec.labels)),
        test_metrics=test_metrics,
        spec=trained.spec.to_dict(),
        reliability={
            "calibrated": reliability(test_probs, y_test),
            "uncalibrated": reliability(raw_probs, y_test),
        },
        test_scores=test_probs.max(axis=1) if len(test_probs) else np.zeros(0),
    )
