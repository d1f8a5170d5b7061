"""What ``kiln compress`` needs from a stored version: its configuration (optionally overridden), where its
data came from, and its trained Keras model as a TrainedModel that compress_model accepts.

    >>> cfg = stored_config(version, Path("compress.yaml"))  # doctest: +SKIP
    >>> trained = stored_model(version, train, cfg)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from serving.preprocess import spec_from_dict
from serving.store import ModelVersion, StoreError
from training.config import ConfigError, RunConfig, load_config, merge_config, train_config_for
from training.data.dataset import Dataset, Source
from training.fit.train import TrainedModel, calibration_sample
from training.models import layers as _custom_layers  # noqa: F401 - registers them for load_model
from training.models.calibration import saved_map
from training.tf_env import keras


def stored_config(version: ModelVersion, override: Path | None = None) -> RunConfig:
    """The version's own configuration, with the sections of the YAML file ``override`` laid over it (for
    example a ``compress:`` section with another sparsity or objective)."""
    saved = version.manifest.get("config")
    if not isinstance(saved, dict):
        raise StoreError(f"{version.task} {version.version} has no stored configuration; it cannot be recompressed")
    layered: dict[str, Any] = {}
    if override is not None:
        if not override.is_file():
            raise ConfigError(f"config file {override} does not exist")
        layered = yaml.safe_load(override.read_text(encoding="utf-8")) or {}
        if not isinstance(layered, dict):
            raise ConfigError(f"config file {override} must hold a mapping of sections")
    return load_config(None, merge_config(saved, layered))


def stored_source(version: ModelVersion, data: Path | None = None) -> Source:
    """The ingest arguments the version was trained with; ``data`` replaces the path (the files moved)."""
    source = dict(version.manifest.get("source") or {})
    source.setdefault("data", version.manifest.get("data", {}).get("source"))
    if data is not None:
        source["data"] = str(data)
    if not source.get("data"):
        raise StoreError(f"{version.task} {version.version} does not record its data; pass --data PATH")
    if not Path(source["data"]).exists():
        raise StoreError(
            f"the data of {version.task} {version.version} is gone from {source['data']}; pass --data PATH"
        )
    return Source(source["data"], source.get("text_column"), source.get("label_column"), source.get("header", True))


def stored_model(version: ModelVersion, train: Dataset, cfg: RunConfig) -> TrainedModel:
    """The version's trained Keras model (``keras/model.keras``) ready for compress_model: its calibration
    sample is drawn from ``train`` as training would have."""
    path = version.path / "keras" / "model.keras"
    if not path.is_file():
        raise StoreError(f"{version.task} {version.version} holds no trained Keras model ({path}); retrain instead")
    spec = spec_from_dict(version.manifest["spec"])
    t = train_config_for(cfg, version.task)
    training = version.manifest.get("training", {})
    return TrainedModel(
        model=keras.models.load_model(path, compile=False),
        spec=spec,
        history={},
        device=str(training.get("device", "cpu")),
        seconds=0.0,
        calibration=calibration_sample(train, spec, cfg.compress.calibration_samples, t.seed),
        config=t,
        calibrated=saved_map(training.get("calibration")),  # the calibration map validation chose for this model
        shipped=dict(training.get("shipped") or {}),  # whether it learnt from validation: which variants it judges
    )
