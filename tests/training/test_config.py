"""YAML config: defaults, overrides, and errors that name the key and the valid choices."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import ConfigError, load_config, train_config_for


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
