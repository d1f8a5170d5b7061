"""Hyperparameter search with Optuna: a search space in YAML, trials scored on the validation split,
bad trials pruned on per-epoch validation loss, and the best configuration written as YAML that
``kiln run --config`` accepts.

The first trial of a new study is always the default configuration, so the report can say whether
tuning beat it, and the best trial replaces it only when it is better on validation by more than
validation's own noise (``adopted``). Several processes (on several machines) can work on one study through an RDB
``storage`` URL (PostgreSQL); the default is a SQLite file in the run directory.

    >>> space = load_space(None, "text")
    >>> sorted(space)[:2]
    ['text_model.architecture', 'text_model.dropout']
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import logging
import math
import random
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from training.config import (
    LINEAR_MODELS,
    WORDS_ONLY_TABLES,
    ConfigError,
    RunConfig,
    config_to_dict,
    load_config,
    train_config_for,
)

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "random", "grid")
STORAGE_ATTEMPTS = 5
OBJECTIVE = "val_loss"  # minimised; also what bad trials are pruned on
# The best of N trials on one validation split is the luckiest as well as the best (Cawley & Talbot 2010, "On
# over-fitting in model selection"): it replaces the default configuration only when its per-item validation
# log-loss is lower than the default's at this one-sided level, Bonferroni-corrected for the trials it was picked
# from (adopted_trial). Simulated with equally good configurations (1,000 items, independent per-item noise), a
# fixed 2-standard-error bar adopted the best of 10 trials 12% of the time and of 50 trials 29%; this rule 3.7% and
# 3.1%.
ADOPT_ALPHA = 0.05
ITEM_LOSSES = "val_item_losses"  # trial user attribute: per-item validation log-loss (float16, base64), in order
ITEMS = "val_items"  # trial user attribute: a digest of the validation items and labels those losses are for

# Per task: what tuning may change. Keys are dotted config paths; see load_space for the entry format.
DEFAULT_SPACES: dict[str, dict[str, dict[str, Any]]] = {
    "text": {
        "text_model.architecture": {"type": "categorical", "choices": ["cnn", "kim", "ngram", "hybrid"]},
        "text_model.embedding_dim": {"type": "categorical", "choices": [32, 64, 128]},
        "text_model.dropout": {"type": "float", "low": 0.1, "high": 0.5},
        "text_model.length_percentile": {"type": "categorical", "choices": [90.0, 95.0, 99.0]},
        "text_model.linear_model": {"type": "categorical", "choices": list(LINEAR_MODELS)},
        "train.optimizer": {"type": "categorical", "choices": ["adam", "adamw", "rmsprop", "nesterov"]},
        # the network trains on top of a warm-started linear half: large steps undo it in the first epoch
        "train.learning_rate": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True},
        "train.lr_schedule": {"type": "categorical", "choices": ["constant", "cosine", "one_cycle"]},
        "train.batch_size": {"type": "categorical", "choices": [16, 32, 64]},
        "train.weight_decay": {"type": "categorical", "choices": [0.0, 1e-5, 1e-4, 1e-3]},
    },
    "image": {
        "image_model.architecture": {"type": "categorical", "choices": ["cnn", "resnet", "separable"]},
        "image_model.dense_units": {"type": "categorical", "choices": [64, 128, 256]},
        "image_model.dropout": {"type": "float", "low": 0.1, "high": 0.5},
        "train.optimizer": {"type": "categorical", "choices": ["adam", "adamw", "nesterov"]},
        "train.learning_rate": {"type": "float", "low": 3e-4, "high": 1e-2, "log": True},
        "train.lr_schedule": {"type": "categorical", "choices": ["constant", "cosine", "one_cycle"]},
        "train.batch_size": {"type": "categorical", "choices": [32, 64, 128]},
        "train.weight_decay": {"type": "categorical", "choices": [0.0, 1e-5, 1e-4, 1e-3]},
    },
}


def fitting_space(space: dict[str, dict[str, Any]], cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """The search space less what the run's configuration fixes: with pretrained word vectors, the embedding is
    as wide as the file's (no embedding_dim to search), and a static table needs a words-only family."""
    text = cfg.text_model
    if not text.pretrained_vectors:
        return space
    space = {key: value for key, value in space.items() if key != "text_model.embedding_dim"}
    families = space.get("text_model.architecture")
    if text.vectors_mode == "static" and families and "choices" in families:
        kept = [c for c in families["choices"] if c in WORDS_ONLY_TABLES]
        space["text_model.architecture"] = {**families, "choices": kept or [text.architecture]}
    return space


def load_space(path: Path | None, task: str) -> dict[str, dict[str, Any]]:
    """The search space from YAML (``key: {type: float|int|categorical, low, high, log, choices}``) or
    the task's default. Keys must be config paths, checked against the configuration's fields."""
    if path is None:
        return DEFAULT_SPACES[task]
    try:
        space = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"search space {path} cannot be read: {exc}") from None
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"search space {path} must map config keys (like train.learning_rate) to ranges")
    for key, entry in space.items():
        kind = entry.get("type") if isinstance(entry, dict) else None
        if kind not in ("float", "int", "categorical"):
            raise ConfigError(f"search space {key}: type must be float, int or categorical, got {kind!r}")
        if kind == "categorical" and not entry.get("choices"):
            raise ConfigError(f"search space {key}: a categorical entry needs choices: [...]")
        if kind != "categorical" and not ("low" in entry and "high" in entry):
            raise ConfigError(f"search space {key}: a {kind} entry needs low and high")
        for value in entry.get("choices") or [entry["low"], entry["high"]]:  # every value must make a valid config
            RunConfig().with_overrides(overrides_from({key: value}))
    return space


def overrides_from(params: dict[str, Any]) -> dict[str, Any]:
    """{"train.learning_rate": 0.01} -> {"train": {"learning_rate": 0.01}} (config overrides)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        section, _, name = key.partition(".")
        if not name:
            raise ConfigError(f"search space key {key!r} must be section.name, like train.learning_rate")
        out.setdefault(section, {})[name] = value
    return out


def suggest(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, entry in space.items():
        if entry["type"] == "categorical":
            params[key] = trial.suggest_categorical(key, entry["choices"])
        elif entry["type"] == "int":
            params[key] = trial.suggest_int(key, int(entry["low"]), int(entry["high"]), log=entry.get("log", False))
        else:
            low, high = float(entry["low"]), float(entry["high"])
            params[key] = trial.suggest_float(key, low, high, log=entry.get("log", False))
    return params


def default_params(space: dict[str, dict[str, Any]], base: RunConfig, task: str) -> dict[str, Any]:
    """The base configuration's value of every key in the space (the first, reference trial), with the
    task's default learning rate filled in when the config leaves it unset."""
    values = config_to_dict(base.model_copy(update={"train": train_config_for(base, task)}))
    params: dict[str, Any] = {}
    for key, entry in space.items():
        section, _, name = key.partition(".")
        value = values[section][name]
        if entry["type"] == "categorical" and value not in entry["choices"]:
            return {}  # the default is outside the space: no reference trial
        if entry["type"] != "categorical" and not entry["low"] <= value <= entry["high"]:
            return {}
        params[key] = value
    return params


def _grid(space: dict[str, dict[str, Any]]) -> dict[str, list[Any]]:
    """Grid values: categorical choices, else low / geometric-or-arithmetic middle / high."""
    grid: dict[str, list[Any]] = {}
    for key, entry in space.items():
        if entry["type"] == "categorical":
            grid[key] = list(entry["choices"])
            continue
        low, high = entry["low"], entry["high"]
        middle = math.sqrt(low * high) if entry.get("log") else (low + high) / 2
        values = [low, int(round(middle)) if entry["type"] == "int" else middle, high]
        grid[key] = list(dict.fromkeys(values))
    return grid


def make_study(name: str, storage: str, sampler: str, space: dict[str, dict[str, Any]], seed: int | None) -> Any:
    """Create or join the study ``name`` in ``storage`` (SQLite file or an RDB URL such as PostgreSQL).

    ``seed`` None: each process samples differently, which processes sharing a study need."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sampler not in SAMPLERS:
        raise ConfigError(f"--sampler {sampler!r} is unknown; choose one of: {', '.join(SAMPLERS)}")
    samplers = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=5),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "grid": lambda: optuna.samplers.GridSampler(_grid(space), seed=seed),
    }
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    for attempt in range(STORAGE_ATTEMPTS):
        try:
            return optuna.create_study(
                study_name=name,
                storage=storage,
                sampler=samplers[sampler](),
                pruner=pruner,
                direction="minimize",
                load_if_exists=True,
            )
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy's errors, without importing it here
            # Processes that start together on an empty database race to create Optuna's tables and
            # types (PostgreSQL: a unique violation on pg_type); the loser retries and joins the winner's.
            if attempt == STORAGE_ATTEMPTS - 1 or type(exc).__name__ not in ("IntegrityError", "ProgrammingError"):
                raise
            log.info("study storage busy (%s); retrying", type(exc).__name__)
            time.sleep(0.5 * (attempt + 1) + random.random())
    raise AssertionError("unreachable")


def pruning_callback(trial: Any) -> Any:
    """A Keras callback that reports validation loss each epoch and stops a trial Optuna prunes."""
    import optuna

    from training.tf_env import keras

    class ReportAndPrune(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            value = (logs or {}).get(OBJECTIVE)
            if value is None or not math.isfinite(value):
                return
            trial.report(float(value), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {epoch + 1}: {OBJECTIVE} {value:.4f} is worse than the median")

    return ReportAndPrune()


@dataclass(frozen=True)
class PerItem:
    """A trial's log-loss on each validation item, and a digest of which items (and labels) those are."""

    losses: np.ndarray
    items: str


Scores = tuple[float, float] | tuple[float, float, PerItem]  # loss, accuracy[, per item]


def items_digest(keys: list[str], labels: list[str]) -> str:
    """Which items, with which labels, a trial was scored on: trials pair up only on the same ones."""
    digest = hashlib.sha1(usedforsecurity=False)
    for key, label in zip(keys, labels, strict=True):
        digest.update(f"{key}\t{label}\n".encode())
    return digest.hexdigest()


def pack_losses(losses: np.ndarray) -> str:
    """Per-item losses as compact text for the study's storage: 2.7 bytes per item (float16, base64), so
    100,000 validation items take 270 KB per trial instead of ~1 MB as JSON floats."""
    return base64.b64encode(np.asarray(losses, dtype="<f2").tobytes()).decode("ascii")


def unpack_losses(packed: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(packed), dtype="<f2").astype(float)


@dataclass
class TrialOutcome:
    number: int
    params: dict[str, Any]
    value: float | None
    state: str
    val_accuracy: float | None = None


def _trial_config(base: RunConfig | dict[str, Any], params: dict[str, Any]) -> RunConfig:
    """``base`` (a configuration, or its config_to_dict) with the trial's ``params`` laid over it."""
    config = base if isinstance(base, RunConfig) else load_config(None, base)
    return config.with_overrides(overrides_from(params))


def run_trial(
    study: Any,
    space: dict[str, dict[str, Any]],
    base: RunConfig | dict[str, Any],
    fit: Callable[[RunConfig, Any], Scores],
) -> TrialOutcome:
    """Ask the study for a trial, train it with ``fit(cfg, pruning_callback)`` -> (val_loss, val_accuracy[,
    per-item validation losses]), and tell the study the result (pruned trials are recorded as pruned)."""
    import optuna

    trial = study.ask()
    params = suggest(trial, space)
    try:
        cfg = _trial_config(base, params)
        loss, accuracy, *items = fit(cfg, pruning_callback(trial))
    except optuna.TrialPruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        log.info("trial %d pruned: %s", trial.number, params)
        return TrialOutcome(trial.number, params, None, "PRUNED")
    except Exception as exc:  # a configuration that cannot train (memory, numerics): record it, go on
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        log.warning("trial %d failed (%s: %s): %s", trial.number, type(exc).__name__, exc, params)
        return TrialOutcome(trial.number, params, None, "FAIL")
    trial.set_user_attr("val_accuracy", accuracy)
    if items:
        _keep_per_item(trial, items[0])
    study.tell(trial, loss)
    log.info("trial %d: %s %.4f, validation accuracy %.4f: %s", trial.number, OBJECTIVE, loss, accuracy, params)
    return TrialOutcome(trial.number, params, loss, "COMPLETE", accuracy)


def _keep_per_item(trial: Any, per_item: PerItem) -> None:
    """Store a trial's per-item losses; a storage that refuses them (a text column too small for a large
    validation split) costs the trial its paired comparison, not its result."""
    try:
        trial.set_user_attr(ITEM_LOSSES, pack_losses(per_item.losses))
        trial.set_user_attr(ITEMS, per_item.items)
    except Exception as exc:  # noqa: BLE001 - the storage's own errors (SQLAlchemy's), without importing it here
        log.warning("trial %d: per-item losses not stored (%s: %s)", trial.number, type(exc).__name__, exc)


def default_trial(study: Any) -> Any | None:
    """The study's finished reference trial (the default configuration), if it has one."""
    done = (t for t in study.trials if t.state.name == "COMPLETE")  # a pruned trial can carry a value too
    return next((t for t in done if t.user_attrs.get("reference") == "default"), None)


def paired_gain(reference: Any, best: Any) -> dict[str, float] | None:
    """How much lower ``best``'s per-item validation log-loss is than ``reference``'s: the mean paired difference
    and its standard error. None unless both trials kept per-item losses for the same items (studies from
    before they were kept, or trials scored on another validation split, cannot be paired)."""
    a, b = reference.user_attrs.get(ITEM_LOSSES), best.user_attrs.get(ITEM_LOSSES)
    same = reference.user_attrs.get(ITEMS) is not None and reference.user_attrs.get(ITEMS) == best.user_attrs.get(ITEMS)
    if not a or not b or not same:
        return None
    differences = unpack_losses(a) - unpack_losses(b)
    if len(differences) < 2:
        return None
    return {
        "gain": round(float(differences.mean()), 6),
        "gain_se": round(float(differences.std(ddof=1) / math.sqrt(len(differences))), 6),
    }


def adoption_z(candidates: int) -> float:
    """The paired z the best of ``candidates`` trials must beat the default by: one-sided ADOPT_ALPHA,
    Bonferroni-corrected for the candidates it was picked from (1.64 for one, 2.54 for 9, 3.09 for 49)."""
    from scipy.stats import norm

    return float(norm.ppf(1.0 - ADOPT_ALPHA / max(1, candidates)))


NO_DEFAULT = "the default configuration's trial did not finish (pruned, failed, or outside the search space)"
NOT_PAIRED = "no per-item validation losses of both trials on the same items (a study from before they were kept)"


def adopted_trial(study: Any) -> tuple[Any, dict[str, Any]]:
    """The trial whose configuration tuning hands on, and why (``compared``: whether the paired test ran,
    else ``not_compared`` says why): the default configuration when it was the best trial or when the best
    trial's paired gain over it does not clear adoption_z; the best trial when it does, or when there is no
    finished default trial with per-item losses to compare with."""
    if not any(t.state.name == "COMPLETE" for t in study.trials):
        raise ConfigError(f"no trial of study {study.study_name} finished (all pruned or failed); see the log")
    best, default = study.best_trial, default_trial(study)
    if default is None:
        return best, {"adopted": "best", "compared": False, "not_compared": NO_DEFAULT}
    if default.number == best.number:
        return best, {"adopted": "default", "compared": False, "not_compared": "the default was the best trial"}
    gain = paired_gain(default, best)
    if gain is None:
        return best, {"adopted": "best", "compared": False, "not_compared": NOT_PAIRED}
    candidates = sum(1 for t in study.trials if t.state.name == "COMPLETE" and t.number != default.number)
    z = adoption_z(candidates)
    clear = gain["gain"] > z * gain["gain_se"]
    why = {"adopted": "best" if clear else "default", "compared": True, **gain, "z_needed": round(z, 3)}
    return (best if clear else default), why


def best_config(study: Any, base: RunConfig | dict[str, Any], adopted: int | None = None) -> RunConfig:
    """The configuration tuning hands on, on top of ``base``: trial number ``adopted`` where the caller has
    already decided it (summary's ``adopted_trial``), else what adopted_trial decides."""
    number = adopted_trial(study)[0].number if adopted is None else adopted
    return _trial_config(base, study.trials[number].params)


def write_outputs(study: Any, cfg: RunConfig, out: Path) -> dict[str, Path]:
    """best_config.yaml (``cfg``, the adopted configuration), trials.csv, trials.md and the optimisation-history
    and importance plots."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"best_config": out / "best_config.yaml", "csv": out / "trials.csv", "markdown": out / "trials.md"}
    paths["best_config"].write_text(yaml.safe_dump(_plain(config_to_dict(cfg)), sort_keys=False), encoding="utf-8")
    header, rows = trial_rows(study)
    with paths["csv"].open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    paths["markdown"].write_text(_markdown_table(header, rows), encoding="utf-8")
    paths.update(_plots(study, out))
    return paths


def _plain(value: Any) -> Any:
    """Tuples as lists, so the YAML is plain and `kiln run --config` reads it back."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def trial_rows(study: Any) -> tuple[list[str], list[list[Any]]]:
    """One row per trial: number, state, objective, validation accuracy, seconds, then every parameter."""
    names = sorted({name for t in study.trials for name in t.params})
    header = ["number", "state", OBJECTIVE, "val_accuracy", "seconds", "reference", *names]
    rows = []
    for t in study.trials:
        seconds = t.duration.total_seconds() if t.duration else None
        rows.append(
            [t.number, t.state.name, t.value, t.user_attrs.get("val_accuracy"), seconds,
             t.user_attrs.get("reference", ""), *(t.params.get(n) for n in names)]
        )  # fmt: skip
    return header, rows


def _markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [f"{v:.4g}" if isinstance(v, float) else "" if v is None else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plots(study: Any, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as views

    paths: dict[str, Path] = {}
    complete = [t for t in study.trials if t.value is not None]
    drawings: dict[str, Callable[[Any], Any]] = {"optimization_history": views.plot_optimization_history}
    if len(complete) >= 2 and len({str(t.params) for t in complete}) >= 2:
        drawings["param_importances"] = views.plot_param_importances
    for name, draw in drawings.items():
        try:
            with warnings.catch_warnings():  # the matplotlib views are marked experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                draw(study)
        except (ValueError, RuntimeError) as exc:  # too few distinct trials for importances
            log.info("no %s plot: %s", name, exc)
            continue
        figure: Any = plt.gcf()
        figure.set_size_inches(7, 4)
        figure.tight_layout()
        figure.savefig(out / f"{name}.png", dpi=80)
        plt.close(figure)
        paths[name] = out / f"{name}.png"
    return paths


def enqueue_default(study: Any, space: dict[str, dict[str, Any]], base: RunConfig, task: str) -> None:
    """Make the default configuration the next trial (the reference to beat) of a new study, or of one whose
    default trial did not finish (a run killed while it ran, then resumed: see close_interrupted)."""
    params = default_params(space, base, task)
    alive = ("COMPLETE", "PRUNED", "RUNNING", "WAITING")
    if params and not any(t.user_attrs.get("reference") == "default" and t.state.name in alive for t in study.trials):
        study.enqueue_trial(params, user_attrs={"reference": "default"})


def close_interrupted(study: Any) -> None:
    """Record as failed the trials a killed process left running in a study only this run uses, so a resumed
    run neither counts them as running nor loses its default trial (enqueue_default queues it again)."""
    import optuna

    for t in study.trials:
        if t.state.name == "RUNNING":
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            log.info("trial %d was running when the last process stopped: recorded as failed", t.number)


def trial_fitter(train: Any, val: Any) -> Callable[[RunConfig, Any], Scores]:
    """fit(cfg, callback) for run_trial: train on ``train``; return the validation log-loss and accuracy of the
    model as it ships, and its log-loss on each validation item (for adopted_trial's paired comparison)."""
    from training.fit.train import train_model

    def fit(cfg: RunConfig, callback: Any) -> Scores:
        from training.tf_env import keras

        keras.backend.clear_session()  # each trial builds a new graph; drop the last one's
        # A trial is judged on validation: its model must not learn from it (the final run refits, trials not).
        selection_only = cfg.model_copy(update={"train": cfg.train.model_copy(update={"refit": False})})
        trained = train_model(train, val, selection_only, extra_callbacks=[callback])
        return shipped_scores(trained, val, cfg)

    return fit


def shipped_scores(trained: Any, val: Any, cfg: RunConfig) -> tuple[float, float, PerItem]:
    """Log-loss and accuracy of a trained model as it ships on ``val`` (items of labels it knows), and each
    item's log-loss (``shipped_probabilities`` says what "as it ships" means)."""
    probabilities, y, val = shipped_probabilities(trained, val, cfg)
    if not len(y):
        return math.inf, 0.0, PerItem(np.zeros(0), items_digest([], []))
    losses = -np.log(np.clip(probabilities[np.arange(len(y)), y], 1e-7, 1.0))
    accuracy = float(np.mean(probabilities.argmax(axis=1) == y))
    return float(losses.mean()), accuracy, PerItem(losses, items_digest(val.keys, val.labels))


def shipped_probabilities(trained: Any, items: Any, cfg: RunConfig) -> tuple[np.ndarray, np.ndarray, Any]:
    """The probabilities a trained model gives as it ships, for the ``items`` of labels it knows, their label
    indices, and those items: after a text model's blend or network check or an image model's kernel blend,
    which the per-epoch curves do not show, through the calibration map validation fitted (as the exported graph
    has it; one or two parameters, so scoring on the same items flatters every trial alike), and without label
    smoothing, which the training loss includes. Predicted in batches: an image split is never one array in
    memory."""
    from training.data.features import encode_labels
    from training.fit.pipeline import eval_batches
    from training.models.calibration import calibrated
    from training.models.head import logits_model

    items = items.subset([i for i, label in enumerate(items.labels) if label in trained.spec.labels])
    if not len(items):
        return np.zeros((0, len(trained.spec.labels))), np.zeros(0, dtype=int), items
    logits = logits_model(trained.model).predict(eval_batches(items, trained.spec, cfg), verbose=0)
    return calibrated(logits, trained.calibrated), encode_labels(items.labels, trained.spec.labels), items


def summary(study: Any) -> dict[str, Any]:
    """The ``tuning`` section of report.json: best trial, the default trial, whether tuning beat it, and which
    of the two the run adopts (``adopted``, ``adopted_trial``; ``gain``, ``gain_se`` and ``z_needed`` when the
    paired comparison ran, else ``not_compared``)."""
    adopted, why = adopted_trial(study)
    best = study.best_trial
    result: dict[str, Any] = {
        "study": study.study_name,
        "objective": f"{OBJECTIVE}: log-loss of the model as it ships, calibrated (validation split, minimised)",
        "trials": len(study.trials),
        "complete": sum(1 for t in study.trials if t.state.name == "COMPLETE"),
        "pruned": sum(1 for t in study.trials if t.state.name == "PRUNED"),
        "best_trial": best.number,
        "best_value": best.value,
        "best_val_accuracy": best.user_attrs.get("val_accuracy"),
        "best_params": best.params,
        "adopted_trial": adopted.number,
        **why,
    }
    default = default_trial(study)
    if default is not None:
        result |= {
            "default_value": default.value,
            "default_val_accuracy": default.user_attrs.get("val_accuracy"),
            "beat_default": bool(best.value < default.value),
        }
    return result


@dataclass(frozen=True)
class StudyPlan:
    """Where and how long a search runs: up to ``trials`` trials (or until ``timeout`` seconds), sampled by
    ``sampler``, stored in ``storage`` (default: a SQLite file in the output folder), over ``space_path``'s
    search space (default: the task's). ``top_up`` continues an interrupted study until it holds ``trials``
    finished trials (``kiln run --resume`` during tuning)."""

    trials: int
    timeout: float | None = None
    sampler: str = "tpe"
    storage: str | None = None
    study_name: str | None = None
    space_path: Path | None = None
    top_up: bool = False


def open_study(cfg: RunConfig, task: str, out: Path, plan: StudyPlan) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The study (new, or continued with ``top_up``) with the default configuration enqueued, and its space."""
    space = fitting_space(load_space(plan.space_path, task), cfg)
    out.mkdir(parents=True, exist_ok=True)
    local = out / "study.db"
    if plan.storage is None and not plan.top_up:
        local.unlink(missing_ok=True)
    study = make_study(
        plan.study_name or f"kiln-{task}",
        plan.storage or f"sqlite:///{local.resolve()}",
        plan.sampler,
        space,
        cfg.train.seed if plan.storage is None else None,  # processes sharing a study must sample differently
    )
    if plan.top_up and plan.storage is None:  # a shared study's running trials may be another process's
        close_interrupted(study)
    enqueue_default(study, space, cfg, task)
    return study, space


def pending_trials(study: Any, plan: StudyPlan) -> Iterator[int]:
    """The numbers of the trials still to run, until ``plan.trials`` are finished or the timeout has passed."""
    started = time.monotonic()
    done = sum(1 for t in study.trials if t.state.is_finished()) if plan.top_up else 0
    for number in range(done, plan.trials):
        if plan.timeout is not None and time.monotonic() - started > plan.timeout:
            return
        yield number


def finish_study(study: Any, cfg: RunConfig, out: Path) -> tuple[RunConfig, dict[str, Any]]:
    """The adopted configuration, and the summary written to ``out``/tuning.json with the trial table and plots."""
    result = summary(study)  # first: with no finished trial it says so as a ConfigError
    best = best_config(study, cfg, result["adopted_trial"])  # decided once, by summary
    result |= {"files": {k: str(v) for k, v in write_outputs(study, best, out).items()}}
    (out / "tuning.json").write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    return best, result


def previous_tuning(run_dir: Path) -> dict[str, Any] | None:
    """The tuning summary of a run that was already tuned (``kiln run --resume``), if it is there."""
    path = run_dir / "tuning" / "tuning.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
