"""Pretrained image backbones from Keras Applications (``image_model.architecture``: mobilenet_v3_small,
mobilenet_v3_large, efficientnet_v2_b0), built flat into the model's own graph so that pruning, quantization-aware
training and the ONNX export see ordinary layers, not a nested model.

The model's input stays what every Kiln image model reads (float32 in [0, 1], from serving.preprocess); a Rescaling
to [0, 255] and then the backbone's own preprocessing (its first layers, ``include_preprocessing``) live in the
graph, so training, the exported file and serving cannot disagree on it.

Weights (``image_model.pretrained``): ``imagenet`` through Keras' own download and cache, a path to a weights file,
or ``none``. Unreachable weights stop the run with one line naming the file to place and where.

    >>> cfg = ImageModelConfig(architecture="mobilenet_v3_small")
    >>> features, names = backbone(keras.Input((224, 224, 3)), cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from training.config import ConfigError, ImageModelConfig
from training.tf_env import keras

log = logging.getLogger(__name__)

# name -> (Keras Applications constructor, the no-top ImageNet weights file Keras downloads into its cache).
# Input sides are in training.config.BACKBONE_SIDES.
BACKBONES = {
    "mobilenet_v3_small": ("MobileNetV3Small", "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"),
    "mobilenet_v3_large": ("MobileNetV3Large", "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5"),
    "efficientnet_v2_b0": ("EfficientNetV2B0", "efficientnetv2-b0_notop.h5"),
}
OFFLINE = "KILN_OFFLINE"  # set to 1: never try to download weights (air-gapped clusters fail at once, not on a timeout)


def keras_cache() -> Path:
    """Where Keras looks for (and downloads) application weights."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def backbone(inputs: Any, cfg: ImageModelConfig) -> tuple[Any, tuple[str, ...]]:
    """The pooled features of the configured backbone over ``inputs`` (N, H, W, 3) in [0, 1], and the names of the
    backbone's layers (what the second training phase unfreezes from the top)."""
    scaled = keras.layers.Rescaling(255.0, name="backbone_input_range")(inputs)
    model = _construct(cfg, scaled, _weights(cfg))
    if cfg.pretrained not in ("imagenet", "none"):
        _load_file(model, Path(cfg.pretrained), cfg.architecture)
    names = tuple(layer.name for layer in model.layers if not isinstance(layer, keras.layers.InputLayer))
    return model.output, names


def _weights(cfg: ImageModelConfig) -> str | None:
    """What Keras should load while building: 'imagenet' (its cache, or a download), else nothing."""
    if cfg.pretrained != "imagenet":
        return None
    if os.environ.get(OFFLINE) == "1" and not _cached(cfg.architecture):
        raise _missing(cfg.architecture, f"{OFFLINE}=1 forbids downloading")
    return "imagenet"


def _construct(cfg: ImageModelConfig, tensor: Any, weights: str | None) -> Any:
    build = getattr(keras.applications, BACKBONES[cfg.architecture][0])
    options = {"input_tensor": tensor, "include_top": False, "weights": weights, "pooling": "avg"}
    try:
        return build(include_preprocessing=True, **options)
    except Exception as exc:  # noqa: BLE001 - Keras raises a bare Exception for a failed download
        if weights == "imagenet" and "URL fetch failure" in str(exc):
            raise _missing(cfg.architecture, str(exc).split(" -- ")[-1]) from None
        raise


def _cached(architecture: str) -> bool:
    return (keras_cache() / BACKBONES[architecture][1]).is_file()


def _missing(architecture: str, why: str) -> ConfigError:
    return ConfigError(
        f"image_model.pretrained imagenet: the {architecture} weights are not here and cannot be downloaded "
        f"({why}); place {BACKBONES[architecture][1]} in {keras_cache()}/ (Keras Applications' own file), or set "
        "image_model.pretrained to the path of a weights file, or to none to train from scratch"
    )


def _load_file(model: Any, path: Path, architecture: str) -> None:
    if not path.is_file():
        raise ConfigError(
            f"image_model.pretrained: no weights file at {path}; give the {architecture} no-top weights (.h5 or "
            "TensorFlow checkpoint) as the run sees them, imagenet to download them, or none"
        )
    try:
        model.load_weights(str(path))
    except (ValueError, OSError) as exc:
        raise ConfigError(
            f"image_model.pretrained: {path} does not hold {architecture} weights without the top ({exc})"
        ) from None
    log.info("backbone %s: weights from %s", architecture, path)
