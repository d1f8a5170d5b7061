"""Image network families by name (``image_model.architecture``): ``cnn`` (stacked 3x3 convolutions, max
pooling, a dense head), ``resnet`` (residual blocks with batch normalisation and a global-average-pooling head),
``separable`` (depthwise-separable blocks, the MobileNet idea: fewer weights and multiply-adds); and pretrained
backbones from Keras Applications (``mobilenet_v3_small``, ``mobilenet_v3_large``, ``efficientnet_v2_b0``:
training.models.backbones) under the same head.

Input: float32 images (N, H, W, C) in [0, 1]; output: the ``probabilities`` layer (training.models.head).

    >>> model = build_image_model(ImageSpec(labels=("a", "b")), ImageModelConfig(), TrainConfig())  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from serving.preprocess import ImageSpec
from training.config import ImageModelConfig, TrainConfig
from training.models.backbones import backbone
from training.models.head import head, regularizer
from training.models.layers import PerImageStandardize
from training.tf_env import keras, tf

layers = keras.layers


def _conv(x: Any, filters: int, cfg: ImageModelConfig, reg: Any, kernel: int = 3) -> Any:
    if not cfg.batch_norm:
        return layers.Conv2D(filters, kernel, padding="same", activation="relu", kernel_regularizer=reg)(x)
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=False, kernel_regularizer=reg)(x)
    return layers.ReLU()(layers.BatchNormalization()(x))


def _can_pool(x: Any) -> bool:
    """Pool only while the feature map is at least 4 pixels high and wide (8x8 inputs stay usable)."""
    return int(x.shape[1]) >= 4 and int(x.shape[2]) >= 4


def _image_cnn(inputs: Any, cfg: ImageModelConfig, reg: Any) -> Any:
    x = inputs
    for filters in cfg.filters:
        x = _conv(_conv(x, filters, cfg, reg), filters, cfg, reg)
        if _can_pool(x):
            x = layers.MaxPooling2D()(x)
    return layers.Flatten()(x)


def _residual_block(x: Any, filters: int, reg: Any) -> Any:
    shortcut = x
    if int(x.shape[-1]) != filters:
        shortcut = layers.Conv2D(filters, 1, use_bias=False, kernel_regularizer=reg)(x)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=reg)(x)
    y = layers.ReLU()(layers.BatchNormalization()(y))
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=reg)(y)
    y = layers.BatchNormalization()(y)
    return layers.ReLU()(layers.Add()([shortcut, y]))


def _image_resnet(inputs: Any, cfg: ImageModelConfig, reg: Any) -> Any:
    x = _conv(inputs, cfg.filters[0], cfg.model_copy(update={"batch_norm": True}), reg)
    for filters in cfg.filters:
        x = _residual_block(x, filters, reg)
        if _can_pool(x):
            x = layers.MaxPooling2D()(x)
    return layers.GlobalAveragePooling2D()(x)


def _image_separable(inputs: Any, cfg: ImageModelConfig, reg: Any) -> Any:
    x = _conv(inputs, cfg.filters[0], cfg.model_copy(update={"batch_norm": True}), reg)
    for filters in cfg.filters:
        for _ in range(2):
            x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
            x = layers.ReLU()(layers.BatchNormalization()(x))
            x = layers.Conv2D(filters, 1, use_bias=False, kernel_regularizer=reg)(x)
            x = layers.ReLU()(layers.BatchNormalization()(x))
        if _can_pool(x):
            x = layers.MaxPooling2D()(x)
    return layers.GlobalAveragePooling2D()(x)


IMAGE_FAMILIES: dict[str, Callable[[Any, ImageModelConfig, Any], Any]] = {
    "cnn": _image_cnn,
    "resnet": _image_resnet,
    "separable": _image_separable,
}


BACKBONE_LAYERS = "kiln_backbone_layers"  # attribute: the backbone layers phase two unfreezes (fit.transfer)


def build_image_model(spec: ImageSpec, cfg: ImageModelConfig, train: TrainConfig) -> keras.Model:
    reg = regularizer(train)
    inputs = keras.Input((spec.height, spec.width, spec.channels), name="image")
    names: tuple[str, ...] = ()
    if cfg.backbone:
        features, names = backbone(inputs, cfg)
    else:
        pixels = PerImageStandardize(name="standardize")(inputs) if cfg.standardize else inputs
        features = IMAGE_FAMILIES[cfg.architecture](pixels, cfg, reg)
    outputs = head(features, cfg.dense_units, cfg.dropout, len(spec.labels), reg)
    model = keras.Model(inputs, outputs, name=f"image_{cfg.architecture}")
    if cfg.transfers:  # the first phase trains the head on the frozen backbone
        for name in names:
            model.get_layer(name).trainable = False
        setattr(model, BACKBONE_LAYERS, names)
    return model


def image_signature(spec: ImageSpec) -> tuple[tf.TensorSpec, ...]:
    """The ONNX input: float32 images (N, H, W, C)."""
    return (tf.TensorSpec((None, spec.height, spec.width, spec.channels), tf.float32, name="image"),)
