"""Image augmentation for the training split, as Keras preprocessing layers run in tf.data.

Kept out of the model itself so the exported ONNX graph has no random ops.
"""

from __future__ import annotations

from training.config import AugmentConfig
from training.tf_env import keras, tf

layers = keras.layers


def build_augmenter(cfg: AugmentConfig, seed: int) -> keras.Sequential | None:
    """A Sequential of random layers, or None when augmentation is off or every factor is zero."""
    if not cfg.enabled:
        return None
    steps: list[keras.layers.Layer] = []
    if cfg.rotation:
        steps.append(layers.RandomRotation(cfg.rotation, fill_mode="nearest", seed=seed))
    if cfg.zoom:
        steps.append(layers.RandomZoom(cfg.zoom, fill_mode="nearest", seed=seed + 1))
    if cfg.translation:
        steps.append(layers.RandomTranslation(cfg.translation, cfg.translation, fill_mode="nearest", seed=seed + 2))
    if cfg.contrast:
        steps.append(layers.RandomContrast(cfg.contrast, seed=seed + 3))
    if cfg.horizontal_flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed + 4))
    return keras.Sequential(steps, name="augment") if steps else None


def augment(dataset: tf.data.Dataset, augmenter: keras.Sequential | None) -> tf.data.Dataset:
    """Apply ``augmenter`` to batched (images, labels); values stay in [0, 1]."""
    if augmenter is None:
        return dataset
    return dataset.map(
        lambda x, y: (tf.clip_by_value(augmenter(x, training=True), 0.0, 1.0), y),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
