"""The tf.data input pipeline: batches of (model input, one-hot label) for training and evaluation.

Images stream from their files: parallel decode with the shared preprocessing (Pillow, the same code
serving runs) to uint8 at the model's size, an optional cache of those uint8 images (memory or disk),
a shuffle buffer bounded in bytes, batching, scaling to [0, 1] in float32 and prefetch. Memory does not
grow with the number of images. Texts are small as token ids and sit in memory.

Augmentation is applied to the training pipeline only; ``eval_batches`` never augments.

    >>> batches = training_batches(train, spec, cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from serving.preprocess import ImageSpec, Spec, TextSpec, model_pixels
from training.config import RunConfig
from training.data.dataset import Dataset
from training.data.features import encode_labels, to_inputs
from training.fit.augment import image_augmentation, text_augmentation
from training.kinds import kind_of
from training.tf_env import tf

log = logging.getLogger(__name__)

# The shuffle buffer holds at most this many bytes of uint8 images, whatever the image size.
SHUFFLE_BUFFER_BYTES = 256 * 2**20


def _one_hot(dataset: Dataset, spec: Spec) -> np.ndarray:
    return np.eye(len(spec.labels), dtype=np.float32)[encode_labels(dataset.labels, spec.labels)]


def _image_loader(spec: ImageSpec):  # type: ignore[no-untyped-def]
    def load(path: bytes) -> np.ndarray:
        with open(path.decode(), "rb") as fh:
            return model_pixels(fh.read(), spec)

    def graph_load(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        pixels = tf.numpy_function(load, [path], tf.uint8, stateful=False)
        pixels.set_shape((spec.height, spec.width, spec.channels))
        return pixels, label

    return graph_load


def _scale(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    # float32 division, as serving.preprocess.scale_pixels does: the same inputs, bit for bit.
    return tf.cast(x, tf.float32) / tf.constant(255.0, tf.float32), y


def _cache(ds: tf.data.Dataset, dataset: Dataset, spec: ImageSpec, cfg: RunConfig) -> tf.data.Dataset:
    mode = cfg.data.image_cache
    if mode == "memory":
        return ds.cache()
    if mode == "disk":
        # One cache per (files, spec): a new data set or image size never reads a stale cache.
        # Size and modification time too, so an image edited in place is not served stale from the cache.
        stats = ((str(p), os.stat(p)) for p in dataset.inputs)
        files = sorted((name, st.st_size, st.st_mtime_ns) for name, st in stats)
        key = hashlib.sha256(repr((files, spec.height, spec.width, spec.channels)).encode())
        directory = Path(str(cfg.data.cache_dir))
        directory.mkdir(parents=True, exist_ok=True)
        prefix = directory / f"images-{key.hexdigest()[:16]}"
        for stale in directory.glob(f"{prefix.name}*.lockfile"):  # left by an interrupted run
            stale.unlink()
        log.info("caching resized images in %s*", prefix)
        return ds.cache(str(prefix))
    return ds


def image_batches(dataset: Dataset, spec: ImageSpec, cfg: RunConfig, train: bool) -> tf.data.Dataset:
    paths = np.array([str(p) for p in dataset.inputs])
    ds = tf.data.Dataset.from_tensor_slices((paths, _one_hot(dataset, spec)))
    item_bytes = spec.height * spec.width * spec.channels
    buffer = max(1, min(cfg.data.shuffle_buffer, len(paths), SHUFFLE_BUFFER_BYTES // item_bytes))
    seed = cfg.train.seed
    if train:
        # Paths are cheap to shuffle in full. Before a cache the order is fixed once (folders list one
        # class after another; a bounded buffer alone would give single-class batches), after it the
        # bounded buffer reshuffles every epoch.
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=cfg.data.image_cache == "none")
    ds = ds.map(_image_loader(spec), num_parallel_calls=tf.data.AUTOTUNE, deterministic=not train)
    if train and cfg.data.image_cache != "none":
        ds = _cache(ds, dataset, spec, cfg).shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(cfg.train.batch_size).map(_scale, num_parallel_calls=tf.data.AUTOTUNE)
    augment = image_augmentation(cfg.augment, seed) if train else None
    if augment is not None:
        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def text_batches(dataset: Dataset, spec: TextSpec, cfg: RunConfig, train: bool) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((to_inputs(dataset, spec), _one_hot(dataset, spec)))
    if train:
        ds = ds.shuffle(len(dataset), seed=cfg.train.seed, reshuffle_each_iteration=True)
    ds = ds.batch(cfg.train.batch_size)
    augment = text_augmentation(cfg.augment, cfg.train.seed, spec) if train else None
    if augment is not None:
        ds = ds.map(augment)
    return ds.prefetch(tf.data.AUTOTUNE)


def training_batches(dataset: Dataset, spec: Spec, cfg: RunConfig) -> tf.data.Dataset:
    """Shuffled, augmented batches of the training split, reshuffled every epoch (as the spec's task batches)."""
    return kind_of(spec.kind).batches(dataset, spec, cfg, train=True)


def eval_batches(dataset: Dataset, spec: Spec, cfg: RunConfig) -> tf.data.Dataset:
    """Batches of a validation or test split in order, never augmented."""
    return kind_of(spec.kind).batches(dataset, spec, cfg, train=False)
