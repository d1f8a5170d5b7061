"""Kiln's custom Keras layers, registered under the package name "kiln": stored models name them so, and
loading a stored Keras model needs this module imported (compression.stored, the bench's Keras peer)."""

from __future__ import annotations

from typing import Any

from training.tf_env import keras, tf


@keras.utils.register_keras_serializable(package="kiln")
class TakeWords(keras.layers.Layer):
    """The first ``length`` positions (ids or their embeddings): the words; bigram ids, when present,
    follow them."""

    def __init__(self, length: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.length = length

    def call(self, ids: Any) -> Any:
        return ids[:, : self.length]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "length": self.length}


@keras.utils.register_keras_serializable(package="kiln")
class PositionEmbedding(keras.layers.Layer):
    """Learned position vectors added to token embeddings (plain weights: prunes and exports cleanly)."""

    def __init__(self, length: int, dim: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.length, self.dim = length, dim

    def build(self, input_shape: Any) -> None:
        self.positions = self.add_weight(name="positions", shape=(self.length, self.dim), initializer="uniform")

    def call(self, x: Any) -> Any:
        return x + self.positions

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "length": self.length, "dim": self.dim}


@keras.utils.register_keras_serializable(package="kiln")
class MeanOfIds(keras.layers.Layer):
    """Mean of the embeddings of the non-padding ids (id 0 is padding), fastText-style."""

    def call(self, inputs: Any) -> Any:
        embedded, ids = inputs
        mask = tf.cast(tf.not_equal(ids, 0), embedded.dtype)[:, :, None]
        total = tf.reduce_sum(embedded * mask, axis=1)
        return total / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)


@keras.utils.register_keras_serializable(package="kiln")
class WeightedBag(keras.layers.Layer):
    """sum_i w_i * e_i / sqrt(sum_i w_i^2) over the non-padding ids: with per-id weights w = IDF and
    embeddings e as wide as the classes, the logits of a linear model over an L2-normalised TF-IDF bag of
    words and bigrams (what a TF-IDF + linear SVM sees), in numeric ops that export to ONNX.

    With M weights per id and embeddings M x classes wide, M such bags (each normalised on its own) are
    added: an ensemble of linear models over the same ids (training.models.linear). Given a fourth input, the
    ids are distinct and that input holds their counts: w = IDF * (1 + log(count)), the sublinear TF-IDF of
    scikit-learn's TfidfVectorizer(sublinear_tf=True), L2-normalised.

    Padding ids (0) carry no weight."""

    def call(self, inputs: Any) -> Any:
        # (batch, length, M * classes), (batch, length, M), (batch, length)[, (batch, length) counts]
        embedded, weights, ids, *counts = inputs
        members = weights.shape[-1]
        scale = tf.cast(tf.not_equal(ids, 0), weights.dtype)  # (batch, length)
        if counts:  # distinct ids with their counts (a whole-document bag): sublinear term frequency 1 + log(tf)
            scale = scale * (1.0 + tf.math.log(tf.maximum(tf.cast(counts[0], weights.dtype), 1.0)))
        # Each member's weights as a (batch, length) matrix, normalised, then one batched MatMul for the weighted
        # sums of every member together. Not ``weights * scale[:, :, None]`` and ``embedded * w[..., None]``: ONNX
        # Runtime broadcasts over a last axis as narrow as M or the classes one short span at a time, and those
        # two products took 60% of a batch of 32 (0.68 ms of fp32 on the MR model; 0.29 ms this way).
        normalised = []
        for m in range(members):
            w = weights[:, :, m] * scale
            normalised.append(w / tf.sqrt(tf.maximum(tf.reduce_sum(w * w, axis=1, keepdims=True), 1e-12)))
        w = tf.stack(normalised, axis=-1)  # (batch, length, M)
        shape = tf.shape(embedded)
        rows = tf.reshape(w, tf.stack([shape[0], 1, shape[1] * members]))  # ids and members, flattened alike
        table = tf.reshape(embedded, tf.stack([shape[0], shape[1] * members, shape[2] // members]))
        return tf.matmul(rows, table)[:, 0, :]


@keras.utils.register_keras_serializable(package="kiln")
class Bias(keras.layers.Layer):
    """A learned per-class offset added to logits: the intercepts of a linear model that ships on its own."""

    def __init__(self, units: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape: Any) -> None:
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def call(self, x: Any) -> Any:
        return x + self.bias

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units}


@keras.utils.register_keras_serializable(package="kiln")
class TakeRange(keras.layers.Layer):
    """Positions ``start`` to ``stop`` of the input ids: one section of the input (the whole-document bag's
    ids or counts)."""

    def __init__(self, start: int, stop: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.start, self.stop = start, stop

    def call(self, ids: Any) -> Any:
        return ids[:, self.start : self.stop]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "start": self.start, "stop": self.stop}


@keras.utils.register_keras_serializable(package="kiln")
class RBFKernel(keras.layers.Layer):
    """exp(-gamma * ||x - l||^2) between each flattened input x and every stored landmark l (a non-trainable
    (landmarks, values) weight): the features of an RBF kernel model (training.models.kernel)."""

    def __init__(self, landmarks: int, gamma: float, **kwargs: Any):
        super().__init__(**kwargs)
        self.count, self.gamma = landmarks, gamma

    def build(self, input_shape: Any) -> None:
        shape = (self.count, int(input_shape[-1]))
        self.landmarks = self.add_weight(name="landmarks", shape=shape, initializer="zeros", trainable=False)

    def call(self, x: Any) -> Any:
        # ||x||^2 - 2 x.l + ||l||^2 in one matrix product; clipped at 0 where rounding makes it negative.
        cross = tf.matmul(x, self.landmarks, transpose_b=True)
        squared = tf.reduce_sum(x * x, axis=-1, keepdims=True) + tf.reduce_sum(self.landmarks**2, axis=-1)[None]
        return tf.exp(-self.gamma * tf.maximum(squared - 2.0 * cross, 0.0))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "landmarks": self.count, "gamma": self.gamma}


@keras.utils.register_keras_serializable(package="kiln")
class PerImageStandardize(keras.layers.Layer):
    """Each image minus its own mean over pixels and channels, divided by its own standard deviation (at least
    1/sqrt(values), as tf.image.per_image_standardization): a picture taken in dim light and one in sunshine
    reach the network alike. No weights: it exports as a few reductions; QAT quantizes its output
    (compression.qat.OUTPUT_QUANTIZED_LAYERS)."""

    def call(self, images: Any) -> Any:
        values = tf.cast(tf.reduce_prod(tf.shape(images)[1:]), images.dtype)
        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        spread = tf.sqrt(tf.reduce_mean(tf.square(images - mean), axis=[1, 2, 3], keepdims=True))
        return (images - mean) / tf.maximum(spread, tf.math.rsqrt(values))
