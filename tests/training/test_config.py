"""YAML config: defaults, overrides, and errors that name the key and the valid choices."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from training.config import (
    CALIBRATION_METHODS,
    CLASS_WEIGHTS,
    COMPRESSION_VARIANTS,
    EARLY_STOPPING_MODES,
    IMAGE_ARCHITECTURES,
    IMAGE_CACHES,
    LINEAR_MODELS,
    LR_SCHEDULES,
    OPTIMIZERS,
    SELECTION_OBJECTIVES,
    SERVING_DEVICES,
    TASK_TRAIN_DEFAULTS,
    TEXT_ARCHITECTURES,
    WIDE_MODES,
    CompressConfig,
    ConfigError,
    RunConfig,
    TrainConfig,
    config_to_dict,
    load_config,
    merge_config,
    train_config_for,
)


def test_defaults_file_and_overrides_layer(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("train: {epochs: 5, optimizer: rmsprop}\nimage_model: {filters: [4, 8]}\n")
    cfg = load_config(path, {"train": {"epochs": 2}})
    assert cfg.train.epochs == 2 and cfg.train.optimizer == "rmsprop"
    assert cfg.image_model.filters == (4, 8)
    assert cfg.train.learning_rate is None  # default kept: filled in per task
    assert train_config_for(cfg, "image").learning_rate == 1e-3
    assert train_config_for(cfg, "text").learning_rate == 3e-4
    pruning = load_config(None, {"compress": {"sparsity_overrides": {"probabilities": 0.5}}}).compress
    assert pruning.sparsity_overrides == {"probabilities": 0.5} and "qat" in pruning.variants
    set_lr = load_config(None, {"train": {"learning_rate": 0.01}})
    assert train_config_for(set_lr, "text").learning_rate == 0.01  # a configured rate wins


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("train: {epoch: 5}", "unknown key(s) epoch; valid keys: epochs"),
        ("trian: {}", "unknown key(s) trian"),
        ("train: {epochs: many}", "train.epochs: expected int"),
        ("augment: {enabled: 1}", "expected true or false"),
        ("data: {val_fraction: 0.6, test_fraction: 0.5}", "sum below 0.9"),
        ("train: {optimizer: adamax}", "choose one of: adam"),
        ("train: {lr_schedule: linear}", "train.lr_schedule 'linear' is unknown; choose one of: constant, step"),
        ("train: {early_stopping_mode: up}", "choose one of: auto, min, max"),
        ("train: {class_weights: inverse}", "auto, balanced, none"),
        ("train: {label_smoothing: 1.5}", "label_smoothing must be in [0, 1)"),
        ("data: {image_cache: disk}", "needs data.cache_dir"),
        ("compress: {variants: [qat4]}", "compress.variants 'qat4' is unknown; choose one of: int8, pruned"),
        ("compress: {calibration: kl}", "compress.calibration 'kl' is unknown; choose one of: minmax, entropy"),
        ("compress: {sparsity: 1.0}", "must be in [0, 1)"),
        ("compress: {sparsity_overrides: {dense: 2}}", "must be in [0, 1)"),
        ("compress: {sparsity_overrides: [dense]}", "compress.sparsity_overrides: expected a mapping"),
        ("- a list", "must hold a mapping"),
        ("train: {epochs: [", "not valid YAML"),
    ],
)
def test_bad_config_names_key_and_fix(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert fragment in str(err.value)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


# ---------------------------------------------------------------- typed sections: strict values, one message shape


SECTIONS = [name for name in RunConfig.model_fields if name != "model_name"]


@pytest.mark.parametrize("section", [*SECTIONS, None])
def test_every_section_rejects_unknown_keys_listing_the_valid_ones(section: str | None) -> None:
    model = RunConfig if section is None else type(getattr(RunConfig(), section))
    valid = ", ".join(model.model_fields)
    with pytest.raises(ConfigError) as err:
        load_config(None, {"zeta": 1, "alpha": 2} if section is None else {section: {"zeta": 1, "alpha": 2}})
    assert str(err.value) == f"{section or 'config'}: unknown key(s) alpha, zeta; valid keys: {valid}"
    with pytest.raises(ValidationError):  # built directly, too
        model(zeta=1)


CHOICES = [
    ("data.image_cache", IMAGE_CACHES),
    ("image_model.architecture", IMAGE_ARCHITECTURES),
    ("text_model.architecture", TEXT_ARCHITECTURES),
    ("text_model.wide_mode", WIDE_MODES),
    ("text_model.linear_model", LINEAR_MODELS),
    ("train.optimizer", OPTIMIZERS),
    ("train.lr_schedule", LR_SCHEDULES),
    ("train.early_stopping_mode", EARLY_STOPPING_MODES),
    ("train.class_weights", CLASS_WEIGHTS),
    ("train.mixed_precision", ("auto", "on", "off")),
    ("train.distribute", ("auto", "mirrored", "none")),
    ("compress.objective", SELECTION_OBJECTIVES),
    ("compress.calibration", CALIBRATION_METHODS),
    ("compress.serving_device", SERVING_DEVICES),
    ("image_model.channels", ("auto", "1", "3")),
]


def _at(key: str, value: Any) -> dict[str, Any]:
    section, _, name = key.partition(".")
    return {section: {name: value}}


@pytest.mark.parametrize("key,choices", CHOICES)
def test_a_bad_choice_lists_the_allowed_values_and_each_allowed_one_loads(key: str, choices: tuple[str, ...]) -> None:
    assert isinstance(choices, tuple) and choices
    with pytest.raises(ConfigError) as err:
        load_config(None, _at(key, "nope"))
    assert str(err.value) == f"{key} 'nope' is unknown; choose one of: {', '.join(choices)}"
    disk = {"data": {"cache_dir": "/tmp/kiln-cache"}}  # image_cache: disk needs it
    for choice in choices:
        section, _, name = key.partition(".")
        assert getattr(getattr(load_config(None, merge_config(disk, _at(key, choice))), section), name) == choice


def test_choice_tuples_are_the_literal_types() -> None:
    from training.config import CalibrationName, CompressionVariant, Optimizer

    assert typing.get_args(Optimizer) == OPTIMIZERS and typing.get_args(CalibrationName) == CALIBRATION_METHODS
    assert CompressConfig().variants == COMPRESSION_VARIANTS == typing.get_args(CompressionVariant)
    with pytest.raises(ConfigError, match=r"compress.variants 'int4' is unknown; choose one of: int8, pruned,"):
        load_config(None, {"compress": {"variants": ["int8", "int4"]}})


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"train": {"weight_decay": -0.1}}, "train.weight_decay must be >= 0, got -0.1"),
        ({"train": {"l2": -1}}, "train.l2 must be >= 0, got -1"),
        ({"train": {"epochs": 0}}, "train.epochs must be >= 1, got 0"),
        ({"train": {"learning_rate": 0}}, "train.learning_rate must be > 0, got 0"),
        ({"train": {"warmup_epochs": -1}}, "train.warmup_epochs must be >= 0, got -1"),
        ({"data": {"val_fraction": 1.2}}, "data.val_fraction must be in (0, 1), got 1.2"),
        ({"data": {"test_fraction": 0}}, "data.test_fraction must be in (0, 1), got 0"),
        ({"data": {"val_fraction": 0.45, "test_fraction": 0.45}}, "data.val_fraction and data.test_fraction must sum"),
        ({"data": {"min_examples_per_class": 2}}, "data.min_examples_per_class must be >= 3, got 2 (one each for"),
        ({"augment": {"random_swap": 1.5}}, "augment.random_swap must be in [0, 1], got 1.5"),
        ({"augment": {"token_dropout": 1}}, "augment.token_dropout must be in [0, 1), got 1"),
        ({"text_model": {"length_percentile": 101}}, "text_model.length_percentile must be in (0, 100], got 101"),
        ({"text_model": {"min_length": 600}}, "text_model.min_length (600) must be at most text_model.max_length"),
        ({"text_model": {"heads": 3}}, "text_model.embedding_dim (64) must be a multiple of text_model.heads (3)"),
        ({"compress": {"qat_min_coverage": 1.5}}, "compress.qat_min_coverage must be in [0, 1], got 1.5"),
        ({"compress": {"prune_epochs": 0}}, "compress.prune_epochs must be >= 1, got 0"),
        ({"compress": {"latency_batch": 8}}, "compress.latency_batch 8 is unknown; choose one of: 1, 32"),
        ({"compress": {"sparsity_overrides": {"dense": -0.5}}}, "compress.sparsity_overrides.dense must be in [0, 1)"),
    ],
)
def test_numeric_bounds_name_the_key_and_the_value(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"train": {"epochs": True}}, "train.epochs: expected int, got True"),
        ({"train": {"epochs": 3.0}}, "train.epochs: expected int, got 3.0"),
        ({"train": {"batch_size": "32"}}, "train.batch_size: expected int, got '32'"),
        ({"compress": {"latency_batch": True}}, "compress.latency_batch: expected int, got True"),
        ({"image_model": {"filters": [8, 16.5]}}, "image_model.filters[1]: expected int, got 16.5"),
        ({"train": {"label_smoothing": True}}, "train.label_smoothing: expected float, got True"),
        ({"train": {"jit_compile": "yes"}}, "train.jit_compile: expected true or false, got 'yes'"),
        ({"augment": {"enabled": 0}}, "augment.enabled: expected true or false, got 0"),
        ({"model_name": 1.5}, "model_name: expected str, got 1.5"),
        ({"image_model": {"filters": 8}}, "image_model.filters: expected a list, got 8"),
        ({"train": [1]}, "train: expected a mapping, got list"),
    ],
)
def test_wrong_types_name_the_key_and_the_value(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert str(err.value) == message


def test_lenient_where_yaml_needs_it() -> None:
    cfg = load_config(None, {"image_model": {"channels": 3, "filters": [4, 8]}, "model_name": 2024})
    assert cfg.image_model.channels == "3" and cfg.model_name == "2024" and cfg.image_model.filters == (4, 8)
    warm = load_config(None, {"train": {"warmup_epochs": 1, "learning_rate": 1}}).train
    assert isinstance(warm.warmup_epochs, float) and isinstance(warm.learning_rate, float)


def test_every_error_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, {"train": {"epochs": 0, "epoch": 1}, "data": {"seed": "x"}})
    lines = str(err.value).splitlines()
    assert lines[0].startswith("train: unknown key(s) epoch; valid keys: epochs, batch_size")
    assert lines[1:] == ["data.seed: expected int, got 'x'", "train.epochs must be >= 1, got 0"]


def test_configs_are_frozen() -> None:
    cfg = load_config(None)
    with pytest.raises(ValidationError, match="frozen"):
        cfg.train.epochs = 3  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        cfg.train = TrainConfig()  # type: ignore[misc]
    assert cfg.train.epochs == 40
    assert train_config_for(cfg, "text").learning_rate == 3e-4 and cfg.train.learning_rate is None  # a copy


def test_unset_train_settings_take_the_tasks_defaults_and_set_ones_win() -> None:
    image, text = train_config_for(load_config(None), "image"), train_config_for(load_config(None), "text")
    assert (image.lr_schedule, image.label_smoothing, image.early_stopping_monitor) == ("cosine", 0.1, "val_accuracy")
    assert (text.lr_schedule, text.label_smoothing, text.early_stopping_monitor) == ("constant", 0.0, "val_loss")
    assert all(getattr(t, key) is not None for t in (image, text) for key in TASK_TRAIN_DEFAULTS["image"])
    chosen = load_config(None, {"train": {"lr_schedule": "one_cycle", "label_smoothing": 0.0}})
    assert (train_config_for(chosen, "image").lr_schedule, train_config_for(chosen, "image").label_smoothing) == (
        "one_cycle",
        0.0,
    )
    assert train_config_for(chosen, "image").early_stopping_patience == 10  # what was left unset still follows


def test_with_overrides_lays_values_over_and_validates() -> None:
    base = load_config(None, {"train": {"epochs": 3}, "compress": {"sparsity_overrides": {"a": 0.5}}})
    overrides = {"train": {"optimizer": "sgd"}, "compress": {"sparsity_overrides": {"b": 0.25}}}
    changed = base.with_overrides(overrides)
    assert changed.train.epochs == 3 and changed.train.optimizer == "sgd"
    assert changed.compress.sparsity_overrides == {"a": 0.5, "b": 0.25}
    assert base.train.optimizer == "adam" and base.with_overrides({}) == base
    assert changed == load_config(None, merge_config(config_to_dict(base), overrides))
    with pytest.raises(ConfigError, match="train.optimizer 'adamx' is unknown; choose one of: adam, adamw"):
        base.with_overrides({"train": {"optimizer": "adamx"}})
    with pytest.raises(ConfigError, match=r"train: unknown key\(s\) epoch; valid keys: epochs"):
        base.with_overrides({"train": {"epoch": 1}})
    with pytest.raises(ConfigError, match="sum below 0.9"):
        base.with_overrides({"data": {"val_fraction": 0.5, "test_fraction": 0.5}})


def test_config_to_dict_is_plain_and_round_trips(tmp_path: Path) -> None:
    cfg = load_config(None, {"model_name": "m", "image_model": {"filters": [8]}, "compress": {"variants": ["int8"]}})
    data = config_to_dict(cfg)
    assert isinstance(data["train"], dict) and data["image_model"]["filters"] == (8,)
    assert load_config(None, json.loads(json.dumps(data))) == cfg  # run.json and the manifest store it as JSON
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(data))))
    assert load_config(path) == cfg == RunConfig().with_overrides(data)
    assert RunConfig() == load_config(None)


def test_an_image_run_gets_the_image_recipes_callbacks_and_warm_up() -> None:
    from training.fit.callbacks import build_callbacks

    image = train_config_for(load_config(None), "image")
    callbacks, early, _ = build_callbacks(image, True, None)
    assert (early.monitor, early.patience) == ("val_accuracy", 10)
    assert not any(type(c).__name__ == "ReduceLROnPlateau" for c in callbacks)  # the cosine schedule decides
    assert image.warmup_epochs == 2.0
    assert train_config_for(load_config(None, {"train": {"epochs": 3}}), "image").warmup_epochs == 0.15
    text = train_config_for(load_config(None), "text")
    assert {k: getattr(text, k) for k in TASK_TRAIN_DEFAULTS["text"]} == {
        "learning_rate": 3e-4,
        "lr_schedule": "constant",
        "warmup_epochs": 0.0,
        "label_smoothing": 0.0,
        "early_stopping_monitor": "val_loss",
        "early_stopping_patience": 6,
    }
    callbacks, early, _ = build_callbacks(text, True, None)
    assert (early.monitor, early.patience) == ("val_loss", 6)
    assert any(type(c).__name__ == "ReduceLROnPlateau" for c in callbacks)
    assert set(TASK_TRAIN_DEFAULTS["image"]) == set(TASK_TRAIN_DEFAULTS["text"])
    assert all(getattr(TrainConfig(), key) is None for key in TASK_TRAIN_DEFAULTS["image"])
