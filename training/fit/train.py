"""Fit a model on the training split (tf.data batches) with early stopping, LR reduction, class weights
for imbalanced data and per-epoch progress logs.

>>> trained = train_model(train, val, load_config(None))  # doctest: +SKIP
>>> trained.history["val_loss"][-1]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serving.preprocess import ImageSpec, Spec, TextSpec, spec_from_dict
from training.config import RunConfig, TrainConfig, train_config_for
from training.data.dataset import Dataset, joined
from training.data.features import class_weights, encode_labels, make_spec, to_inputs
from training.fit.build import compiled_model, in_float32, save_for_inference, weights_copy
from training.fit.callbacks import (
    BEST_WEIGHTS,
    DECISIONS,
    FINISHED,
    SELECTED,
    build_callbacks,
    maximises,
    monitor_name,
    read_history,
)
from training.fit.pipeline import eval_batches, training_batches
from training.fit.refit import Selected, refit, shipped_spec
from training.fit.transfer import fine_tune_backbone
from training.kinds import kind_of
from training.models import layers as _custom_layers  # noqa: F401 - registers them for load_model (resume)
from training.models.calibration import (
    IDENTITY_MAP,
    LINKS,
    describe_map,
    expected_calibration_error,
    fit_calibration,
    saved_map,
    softmax,
)
from training.models.calibration import calibrated as calibrated_probabilities
from training.models.head import logits_model
from training.models.kernel import KernelChoice, choose, fit_kernel, kernel_applies
from training.models.linear import LinearFit, blend, fit_linear_models, linear_model, network_helps, ships_margins
from training.models.text import unreached_rows_zeroed, vectors_summary
from training.tf_env import configure_devices, distribution, keras, set_seed, tf, use_mixed_precision

log = logging.getLogger(__name__)


@dataclass
class TrainedModel:
    model: keras.Model
    spec: Spec
    history: dict[str, list[float]]  # per epoch, across a resume
    device: str
    seconds: float
    calibration: np.ndarray = field(repr=False)  # a sample of training inputs for static quantization
    config: TrainConfig = field(default_factory=TrainConfig)
    monitor: str = "val_loss"
    stopped_early: bool = False
    class_weights: dict[str, float] | None = None
    examples_per_s: float = 0.0
    wide: dict[str, Any] | None = None  # the wide half's fit and blend (text models), for the report
    shipped: dict[str, Any] = field(default_factory=dict)  # what the shipped model learnt from, for the report
    # the calibration map validation chose (training.models.calibration; identity until calibrate runs)
    calibrated: dict[str, Any] = field(default_factory=lambda: dict(IDENTITY_MAP))
    vectors: dict[str, Any] | None = None  # pretrained word vectors: file, width, the shipped vocabulary's coverage
    kernel: dict[str, Any] | None = None  # image models: the kernel model beside the network and what shipped

    @property
    def temperature(self) -> float:
        """The calibration map's temperature (1.0 for the sigmoid link, whose slope does that work)."""
        return float(self.calibrated["temperature"])

    def summary(self) -> dict[str, Any]:
        """The ``training`` section of report.json."""
        values = self.history.get(self.monitor) or self.history.get("loss", [float("nan")])
        pick = np.argmax if maximises(self.monitor, self.config.early_stopping_mode) else np.argmin
        best = int(pick(values))
        return {
            "epochs_run": len(values),
            "best_epoch": best + 1,
            "stopped_early": self.stopped_early,
            "monitor": self.monitor,
            "best_" + self.monitor: round(float(values[best]), 6),
            "optimizer": self.config.optimizer,
            "learning_rate": self.config.learning_rate,
            "lr_schedule": self.config.lr_schedule,
            "warmup_epochs": self.config.warmup_epochs,
            "label_smoothing": self.config.label_smoothing,
            "early_stopping_patience": self.config.early_stopping_patience,
            "final_learning_rate": float(self.history.get("lr", [0.0])[-1]),
            "train_seconds": round(self.seconds, 1),
            "examples_per_second": round(self.examples_per_s, 1),
            "device": self.device,
            "model": self.model.name,
            "parameters": int(self.model.count_params()),
            "class_weights": self.class_weights,
            "wide": self.wide,
            "shipped": self.shipped,
            "calibration": self.calibrated,
            "pretrained_vectors": self.vectors,
            "kernel": self.kernel,
        }


def train_model(
    train: Dataset,
    val: Dataset,
    cfg: RunConfig,
    run_dir: Path | None = None,
    resume: bool = False,
    extra_callbacks: list[Any] | None = None,
) -> TrainedModel:
    """Build the spec from the training split, then fit on tf.data batches. Labels come from the training split.

    With ``run_dir``, every epoch is checkpointed there; ``resume`` continues from the last checkpoint of
    an interrupted run in that directory, the epoch count carrying on.
    """
    t = train_config_for(cfg, train.task)
    set_seed(t.seed)
    device = configure_devices()
    spec = started_spec(run_dir, resume) or make_spec(train, train.label_names, cfg)
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / RUN_SPEC).write_text(json.dumps(spec.to_dict(), indent=2), encoding="utf-8")
    known = [i for i, label in enumerate(val.labels) if label in spec.labels]  # others cannot be scored
    val = val.subset(known)
    weights = class_weights(train.labels, spec.labels, t)
    steps = math.ceil(len(train) / t.batch_size)
    strategy, placement = distribution(t.distribute)
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    mixed = use_mixed_precision(t.mixed_precision)
    device = ", ".join([device, placement] + ["mixed_float16"] * mixed + ["XLA"] * t.jit_compile)
    spec, linear = kind_of(train.task).fit_linear(train, val, spec, cfg, bool(weights))
    if linear is not None:  # text_model.linear_model auto becomes what the linear half chose (its model's shape)
        cfg = cfg.model_copy(update={"text_model": cfg.text_model.with_linear_choice(linear.members)})
    with strategy.scope():
        model = compiled_model(spec, cfg, t, steps, mixed, linear)
    log.info(
        "training %s (%s parameters): %d train / %d validation examples, %d classes; %s, lr %g, %s schedule%s",
        model.name,
        f"{model.count_params():,}",
        len(train),
        len(val),
        len(spec.labels),
        t.optimizer,
        t.learning_rate,
        t.lr_schedule,
        "; balanced class weights (imbalanced classes)" if weights else "",
    )
    blended: dict[str, Any] = {}  # what joining the halves chose, for the report
    refit_epochs = 0
    has_val = len(val) > 0
    finished = run_dir / FINISHED if run_dir is not None else None
    started = time.perf_counter()
    selected_file = run_dir / SELECTED if run_dir is not None else None
    if resume and finished is not None and finished.exists():
        # Killed after training (while compressing or registering): the trained model is kept, not retrained.
        log.info("resuming after training: loading %s", finished)
        model = keras.models.load_model(finished, compile=False)
        decided = _read_decisions(finished.parent)
        selection = (selected_file if refits(t, cfg, has_val) else finished, spec)  # the model validation chose
        saved = decided.get("calibration")
        calibrated = saved_map(saved) if saved else _calibrate_saved(*selection, val, cfg)
        spec = finished_spec(decided, spec, refits(t, cfg, has_val), lambda: joined(train, val), cfg)
        blended, refit_epochs = decided.get("wide", {}), int(decided.get("refit_epochs", 0))
        kernel = _kernel_choice(decided)
        epochs_now, stopped_early = 0, len(read_history(finished.parent).get("loss", [])) < t.epochs
        fitted_history: dict[str, list[float]] = {}
    else:
        if resume and selected_file is not None and selected_file.exists():
            # Killed during the refit: validation's choice is kept; only the refit runs again.
            log.info("resuming before the refit: loading %s", selected_file)
            model = keras.models.load_model(selected_file, compile=False)
            blended = _read_decisions(selected_file.parent).get("wide", {})
            kernel = _kernel_choice(_read_decisions(selected_file.parent))
            epochs_now, stopped_early = 0, len(read_history(selected_file.parent).get("loss", [])) < t.epochs
            fitted_history = {}
        else:
            callbacks, early, best = build_callbacks(t, has_val, run_dir, resume)
            callbacks += extra_callbacks or []
            with unreached_rows_zeroed(model, spec, cfg.text_model):
                fitted = model.fit(
                    training_batches(train, spec, cfg),
                    validation_data=eval_batches(val, spec, cfg) if has_val else None,
                    epochs=t.epochs,
                    class_weight=weights,
                    callbacks=callbacks,
                    # A progress bar per epoch in a terminal; in files and captured logs, ProgressLog's one line.
                    verbose=1 if sys.stdout.isatty() else 0,
                )
                fitted_history = fitted.history
                epochs_now, stopped_early = len(fitted_history.get("loss", [])), early.stopped_epoch > 0
                if best.weights is not None:
                    model.set_weights(best.weights)  # the best epoch of this process
                elif run_dir is not None and (run_dir / BEST_WEIGHTS).exists():
                    model.load_weights(run_dir / BEST_WEIGHTS)  # a resume whose best epoch came before the kill
            done = len(read_history(run_dir).get("loss", [])) if run_dir is not None else epochs_now
            second = fine_tune_backbone(model, train, val, spec, cfg, t, best.best, weights, done, run_dir)
            fitted_history = {k: [*v, *second.get(k, [])] for k, v in fitted_history.items()}
            epochs_now += len(second.get("loss", []))
            if mixed:
                model = in_float32(model, spec, cfg)
            if linear is not None:
                assert isinstance(spec, TextSpec)
                model, blended = finish_wide(model, linear, val, spec, cfg)
            model, kernel = kind_of(train.task).fit_beside(model, train, val, spec, cfg, bool(weights))
            if selected_file is not None and refits(t, cfg, has_val):
                save_for_inference(model, selected_file)
                _write_decisions(selected_file.parent, {"wide": blended, **_kernel_decision(kernel)})
        # Before the refit: the selection model never learnt from validation, so its scores there are honest.
        links = LINKS if ships_margins(linear, blended) else ("temperature",)
        calibrated = calibrate(_off_the_cluster(model) if multi_worker else model, val, spec, cfg, links)
        if refits(t, cfg, has_val):
            selected = Selected(model, spec, _history(run_dir, fitted_history), monitor_name(t, has_val), linear)
            selected.network_kept = bool(blended.get("network_kept", True))
            selected.kernel = kernel
            with strategy.scope():
                model, spec, refit_epochs = refit(selected, train, val, cfg, t, mixed)
        if finished is not None:
            save_for_inference(model, finished)
            # the spec the saved model reads: a resume must not make it again under rules that may have changed
            decided = {"wide": blended, "refit_epochs": refit_epochs, "calibration": calibrated, "spec": spec.to_dict()}
            decided.update(_kernel_decision(kernel))
            _write_decisions(finished.parent, decided)
    if multi_worker:
        model = _off_the_cluster(model)
    seconds = time.perf_counter() - started
    history = _history(run_dir, fitted_history)
    log.info("trained in %.1fs (%d epochs in this process, %d in all)", seconds, epochs_now, len(history["loss"]))
    return TrainedModel(
        model=model,
        spec=spec,
        history=history,
        device=device,
        seconds=seconds,
        calibration=calibration_sample(train, spec, cfg.compress.calibration_samples, t.seed),
        config=t,
        monitor=monitor_name(t, has_val),
        stopped_early=stopped_early,
        class_weights={spec.labels[i]: round(w, 4) for i, w in weights.items()} if weights else None,
        examples_per_s=len(train) * epochs_now / seconds if seconds else 0.0,
        wide={"mode": cfg.text_model.wide_mode, **linear.summary(), **blended} if linear is not None else None,
        shipped=shipped_summary(len(train), len(val), refits(t, cfg, has_val), refit_epochs),
        calibrated=calibrated,
        vectors=vectors_summary(cfg.text_model, spec) if isinstance(spec, TextSpec) else None,
        kernel=kernel.summary() if kernel is not None else None,
    )


def calibrate(
    model: Any, val: Dataset, spec: Spec, cfg: RunConfig, links: tuple[str, ...] = ("temperature",)
) -> dict[str, Any]:
    """The calibration map for the shipped model's scores, one of the families ``links`` (training.models.
    calibration: the sigmoid link only for one-vs-rest margins), fitted on the selection model's validation
    logits, and the validation ECE before and after it. Identity without validation."""
    if not len(val):
        return {**IDENTITY_MAP, "fitted_on": None}
    logits = logits_model(model).predict(eval_batches(val, spec, cfg), verbose=0)
    y = encode_labels(val.labels, spec.labels)
    fitted = fit_calibration(logits, y, links)
    summary = {
        **fitted,
        "fitted_on": "validation (the model validation chose, before any refit on it)",
        "items": len(val),
        "validation_ece_before": expected_calibration_error(softmax(logits), y),
        "validation_ece_after": expected_calibration_error(calibrated_probabilities(logits, fitted), y),
    }
    log.info(
        "calibration: %s; validation ECE %.4f -> %.4f",
        describe_map(fitted),
        summary["validation_ece_before"],
        summary["validation_ece_after"],
    )
    return summary


def finished_spec(
    decided: dict[str, Any], started: Spec, refit: bool, everything: Callable[[], Dataset], cfg: RunConfig
) -> Spec:
    """The spec of a run's finished model, resumed after training: as saved with it, or (runs finished before it
    was saved) the refit's spec made again from ``everything()`` (training + validation), else the spec the run
    started with."""
    if decided.get("spec"):
        return spec_from_dict(decided["spec"])
    return shipped_spec(started, everything(), cfg) if refit else started


def _calibrate_saved(selected: Path | None, spec: Spec, val: Dataset, cfg: RunConfig) -> dict[str, Any]:
    """The calibration map of a run resumed after training whose decisions lack it: fitted on the saved model
    validation chose (never on a refit model, which learnt from validation); the identity when it is gone."""
    if selected is None or not selected.exists():
        return {**IDENTITY_MAP, "fitted_on": None}
    return calibrate(keras.models.load_model(selected, compile=False), val, spec, cfg)


def shipped_summary(train_items: int, validation_items: int, refit: bool, epochs: int) -> dict[str, Any]:
    """report.json ``training.shipped``: which items the shipped model learnt from, and what validation chose on."""
    return {
        "learnt_from": "training + validation" if refit else "training",
        "items": train_items + validation_items * refit,
        "refit_epochs": epochs if refit else None,
        "chosen_on": "validation",
        "selection_items": {"training": train_items, "validation": validation_items},
    }


def refits(t: TrainConfig, cfg: RunConfig, has_validation: bool) -> bool:
    """Whether the shipped model learns again from training + validation (``train.refit``): only when there was
    a validation split to choose on, and not for a blended text model, whose blend weights were fitted to the
    selection network's validation outputs, nor for a pretrained backbone, whose two phases were each stopped on
    validation."""
    return t.refit and has_validation and cfg.text_model.wide_mode != "blend" and not cfg.image_model.transfers


def _off_the_cluster(model: Any) -> Any:
    """A copy of a model trained under MultiWorkerMirroredStrategy, outside it: only the chief goes on to
    compress and evaluate, after the other workers have exited, and any predict on the distributed model
    would wait for them."""
    return weights_copy(model)


def _write_decisions(run_dir: Path, decided: dict[str, Any]) -> None:
    (run_dir / DECISIONS).write_text(json.dumps(decided, default=float) + "\n", encoding="utf-8")


def _read_decisions(run_dir: Path) -> dict[str, Any]:
    """What an interrupted run's training decided (training.fit.callbacks.DECISIONS), or nothing."""
    path = run_dir / DECISIONS
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _history(run_dir: Path | None, fitted: dict[str, list[float]]) -> dict[str, list[float]]:
    """The selection run's history per epoch: the run directory's CSV (across a resume), else this fit's."""
    history = read_history(run_dir) if run_dir is not None else {}
    return history or {k: [float(v) for v in vs] for k, vs in fitted.items()}


RUN_SPEC = "spec.json"  # in the run directory: the spec the run started with, which a resume keeps


def started_spec(run_dir: Path | None, resume: bool) -> Spec | None:
    """A resumed run's spec as it was made when the run started (its checkpoints' inputs), else None."""
    path = run_dir / RUN_SPEC if run_dir is not None else None
    if not resume or path is None or not path.is_file():
        return None
    return spec_from_dict(json.loads(path.read_text(encoding="utf-8")))


def fit_wide(train: Dataset, val: Dataset, spec: TextSpec, cfg: RunConfig, balanced: bool) -> tuple[Spec, LinearFit]:
    """Fit the linear half of a wide & deep text model on the training split (training.models.linear). When the
    chosen linear model does not read character n-grams, the spec drops them: nothing computes them for
    serving. ``joint`` loads the fit into the model before training, ``blend`` after."""
    fit = fit_linear_models(
        to_inputs(train, spec),
        encode_labels(train.labels, spec.labels),
        to_inputs(val, spec),
        encode_labels(val.labels, spec.labels),
        spec.input_vocabulary,
        len(spec.labels),
        balanced,
        spec.char_start if spec.char_buckets else None,
        cfg.text_model.linear_model,
        (spec.bag_start, spec.bag_length) if spec.bag_length else None,
    )
    if spec.char_buckets and not fit.reads(spec.char_start):
        spec = dataclasses.replace(spec, char_buckets=0, char_length=0)
        fit = fit.first_ids(spec.input_vocabulary)
    return spec, fit


def finish_wide(model: Any, fit: LinearFit, val: Dataset, spec: TextSpec, cfg: RunConfig) -> tuple[Any, dict[str, Any]]:
    """After training: blend the halves (blend); or, joint, keep the wide & deep model only if it beats the
    linear model alone on validation, else ship the linear model as a model of its own (no network in the
    graph). Returns the model that ships and what was decided, for the report."""
    ids, y = to_inputs(val, spec), encode_labels(val.labels, spec.labels)
    if cfg.text_model.wide_mode == "blend":
        return model, blend(model, fit, ids, y)
    if not cfg.text_model.require_network_gain:
        return model, {}
    decided = network_helps(model, fit, ids, y)
    return (model if decided["network_kept"] else linear_model(spec, cfg.text_model, fit)), decided


def finish_kernel(
    network: Any, train: Dataset, val: Dataset, spec: ImageSpec, cfg: RunConfig, balanced: bool
) -> tuple[Any, KernelChoice | None]:
    """Image models: fit the kernel model on the training split (training.models.kernel) and return what
    validation prefers to ship (the network, the kernel model alone, or both blended) with the choice; the
    network and None where no kernel model is tried."""
    if not kernel_applies(spec, cfg.image_model, len(train)):
        return network, None
    started = time.perf_counter()
    val_x, val_y = to_inputs(val, spec), encode_labels(val.labels, spec.labels)
    train_x, train_y = to_inputs(train, spec), encode_labels(train.labels, spec.labels)
    seed = train_config_for(cfg, train.task).seed
    fit = fit_kernel(train_x, train_y, val_x, val_y, len(spec.labels), balanced, cfg.image_model, seed)
    model, choice = choose(network, fit, val_x, val_y)
    log.info("kernel model fitted and judged in %.1fs", time.perf_counter() - started)
    return model, choice


def _kernel_decision(choice: KernelChoice | None) -> dict[str, Any]:
    return {"kernel": choice.summary()} if choice is not None else {}


def _kernel_choice(decided: dict[str, Any]) -> KernelChoice | None:
    saved = decided.get("kernel")
    return KernelChoice.from_summary(saved) if saved else None


def calibration_sample(train: Dataset, spec: Spec, n: int, seed: int) -> np.ndarray:
    """Model inputs for up to ``n`` random training items (static INT8 calibration reads these)."""
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(train), min(n, len(train)), replace=False).tolist())
    return to_inputs(train.subset(picked), spec)
