"""Augmentation of the training split, applied on the fly in tf.data (validation and test never see it).

Images: Keras preprocessing layers (rotation, zoom, translation, contrast, brightness, flips) and
optional mixup or cutmix on batches with one-hot labels. Texts: token dropout and random neighbour
swaps on token ids. Kept out of the model itself so the exported ONNX graph has no random ops.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from serving.preprocess import TextSpec, bigram_id
from training.config import AugmentConfig, RunConfig
from training.data.dataset import Dataset
from training.data.plots import grid, thumbnail
from training.tf_env import keras, tf

layers = keras.layers
Batch = tuple[tf.Tensor, tf.Tensor]


def build_augmenter(cfg: AugmentConfig, seed: int) -> keras.Sequential | None:
    """A Sequential of random image layers, or None when augmentation is off or every factor is zero."""
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
    if cfg.brightness:
        steps.append(layers.RandomBrightness(cfg.brightness, value_range=(0.0, 1.0), seed=seed + 4))
    flips = (
        "horizontal_and_vertical"
        if cfg.horizontal_flip and cfg.vertical_flip
        else ("horizontal" if cfg.horizontal_flip else "vertical" if cfg.vertical_flip else None)
    )
    if flips:
        steps.append(layers.RandomFlip(flips, seed=seed + 5))
    return keras.Sequential(steps, name="augment") if steps else None


def _beta(alpha: float, n: tf.Tensor) -> tf.Tensor:
    a = tf.random.gamma([n], alpha)
    b = tf.random.gamma([n], alpha)
    return a / (a + b)


def mixup(x: tf.Tensor, y: tf.Tensor, alpha: float) -> Batch:
    """Blend each image and one-hot label with another of the batch, weight ~ Beta(alpha, alpha)."""
    n = tf.shape(x)[0]
    lam = _beta(alpha, n)
    other = tf.random.shuffle(tf.range(n))
    xl = tf.reshape(lam, [-1, 1, 1, 1])
    yl = tf.reshape(lam, [-1, 1])
    return xl * x + (1 - xl) * tf.gather(x, other), yl * y + (1 - yl) * tf.gather(y, other)


def cutmix(x: tf.Tensor, y: tf.Tensor, alpha: float) -> Batch:
    """Paste a random box from another image of the batch; labels mix by the pasted area."""
    n, h, w = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    lam = _beta(alpha, 1)[0]
    cut = tf.sqrt(1.0 - lam)
    ch = tf.cast(cut * tf.cast(h, tf.float32), tf.int32)
    cw = tf.cast(cut * tf.cast(w, tf.float32), tf.int32)
    cy = tf.random.uniform([], 0, h, dtype=tf.int32)
    cx = tf.random.uniform([], 0, w, dtype=tf.int32)
    y0, y1 = tf.clip_by_value(cy - ch // 2, 0, h), tf.clip_by_value(cy + ch // 2, 0, h)
    x0, x1 = tf.clip_by_value(cx - cw // 2, 0, w), tf.clip_by_value(cx + cw // 2, 0, w)
    rows = tf.logical_and(tf.range(h) >= y0, tf.range(h) < y1)
    cols = tf.logical_and(tf.range(w) >= x0, tf.range(w) < x1)
    box = tf.cast(tf.logical_and(rows[:, None], cols[None, :]), x.dtype)[None, :, :, None]
    other = tf.random.shuffle(tf.range(n))
    mixed = x * (1 - box) + tf.gather(x, other) * box
    area = tf.cast((y1 - y0) * (x1 - x0), tf.float32) / tf.cast(h * w, tf.float32)
    return mixed, (1 - area) * y + area * tf.gather(y, other)


def image_augmentation(cfg: AugmentConfig, seed: int) -> Callable[[tf.Tensor, tf.Tensor], Batch] | None:
    """The function tf.data maps over training batches of (images in [0, 1], one-hot labels), or None."""
    augmenter = build_augmenter(cfg, seed)
    mix = cfg.enabled and (cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0)
    if augmenter is None and not mix:
        return None

    def apply(x: tf.Tensor, y: tf.Tensor) -> Batch:
        if augmenter is not None:
            x = tf.clip_by_value(augmenter(x, training=True), 0.0, 1.0)
        if cfg.enabled and cfg.mixup_alpha > 0:
            x, y = mixup(x, y, cfg.mixup_alpha)
        if cfg.enabled and cfg.cutmix_alpha > 0:
            x, y = cutmix(x, y, cfg.cutmix_alpha)
        return x, y

    return apply


def perturb_tokens(tokens: np.ndarray, dropout: float, swap: float, rng: np.random.Generator) -> np.ndarray:
    """Token ids (N, L) with tokens dropped (the rest shift left, padding fills the end) and neighbours swapped."""
    out = np.zeros_like(tokens)
    for row, ids in enumerate(tokens):
        ids = ids[ids != 0]
        if dropout > 0 and len(ids) > 1:
            kept = ids[rng.random(len(ids)) >= dropout]
            ids = kept if len(kept) else ids[:1]
        if swap > 0 and len(ids) > 1:
            ids = ids.copy()
            for i in np.flatnonzero(rng.random(len(ids) - 1) < swap):
                ids[i], ids[i + 1] = ids[i + 1], ids[i]
        out[row, : len(ids)] = ids
    return out


def text_augmentation(
    cfg: AugmentConfig, seed: int, spec: TextSpec | None = None
) -> Callable[[tf.Tensor, tf.Tensor], Batch] | None:
    """Token dropout and random swap over training batches of ids, or None when both are off.

    Only the word ids are perturbed; with hashed bigrams (``spec.ngram_buckets``) the bigram ids are
    recomputed from the perturbed words, so the network never sees a combination serving cannot produce.
    """
    if not cfg.enabled or (cfg.token_dropout <= 0 and cfg.random_swap <= 0):
        return None
    rng = np.random.default_rng(seed)

    def perturb(ids: np.ndarray) -> np.ndarray:
        if spec is None or spec.input_length == spec.max_length:
            return perturb_tokens(ids, cfg.token_dropout, cfg.random_swap, rng)
        words = perturb_tokens(ids[:, : spec.max_length], cfg.token_dropout, cfg.random_swap, rng)
        bigrams = [rehash_bigrams(words, spec)] if spec.ngram_buckets else []
        # Character n-gram ids stay as they were: only the linear half reads them, fitted on unperturbed
        # texts, and a word outside the vocabulary has no string left here to hash.
        return np.concatenate([words, *bigrams, ids[:, spec.deep_length :]], axis=1)

    def apply(x: tf.Tensor, y: tf.Tensor) -> Batch:
        out = tf.numpy_function(perturb, [x], tf.int32, stateful=True)
        out.set_shape(x.shape)
        return out, y

    return apply


def rehash_bigrams(words: np.ndarray, spec: TextSpec) -> np.ndarray:
    """The bigram ids of rows of word ids, as serving.preprocess computes them from the words."""
    out = np.zeros_like(words)
    vocabulary = spec.vocabulary
    for row, ids in enumerate(words):
        ids = ids[ids != 0]
        pairs = [bigram_id(vocabulary[a], vocabulary[b], spec) for a, b in zip(ids[:-1], ids[1:], strict=True)]
        out[row, : len(pairs)] = pairs
    return out


def augmented_grid(train: Dataset, cfg: RunConfig, path: Path) -> Path | None:
    """The same few training images, augmented four times each, as the training pipeline does it."""
    augment = image_augmentation(cfg.augment, cfg.train.seed)
    if augment is None or not len(train):
        return None
    picks = np.linspace(0, len(train) - 1, min(6, len(train))).astype(int)
    originals = np.stack([thumbnail(train.inputs[i]) for i in picks]).astype(np.float32)
    labels = np.eye(len(picks), dtype=np.float32)
    rows = [("original", list(originals))]
    for k in range(4):
        x, _ = augment(tf.constant(originals), tf.constant(labels))
        rows.append((f"augmented {k + 1}", list(np.asarray(x))))
    return grid(rows, "Training augmentation", path)
