"""Model families by name (tf_keras), chosen in config: ``image_model.architecture`` and
``text_model.architecture``.

Images: ``cnn`` (stacked 3x3 convolutions, max pooling, a dense head), ``resnet`` (residual blocks with
batch normalisation and a global-average-pooling head), ``separable`` (depthwise-separable blocks, the
MobileNet idea: fewer weights and multiply-adds). Texts: ``cnn`` (one convolution width), ``kim``
(widths 3/4/5 side by side, Kim 2014), ``bigru`` (bidirectional GRU), ``transformer`` (a small encoder
with learned positions), ``ngram`` (a bag of word and hashed-bigram embeddings, fastText-style),
``hybrid`` (kim and ngram side by side).

Inputs are numeric tensors only (float32 images, int32 ids) so the ONNX export needs no string ops
and serving stays TensorFlow-free; the last layer is named ``probabilities`` and computes in float32.

    >>> model = build_model(ImageSpec(labels=("a", "b")), RunConfig())  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from serving.preprocess import ImageSpec, Spec, TextSpec
from training.config import ImageModelConfig, RunConfig, TextModelConfig, TrainConfig
from training.fit.tf_env import keras, tf

layers = keras.layers


def _regularizer(cfg: TrainConfig) -> Any:
    """L1/L2 weight penalties for Dense and convolution kernels (None when both are 0)."""
    if not (cfg.l1 or cfg.l2):
        return None
    return keras.regularizers.L1L2(l1=cfg.l1, l2=cfg.l2)


def _head(features: Any, units: int, dropout: float, classes: int, reg: Any, wide: Any = None) -> Any:
    """Dropout, a hidden Dense layer, dropout, then softmax probabilities (the layer ONNX exports as output).

    ``wide``: per-class logits of a linear model, added to the network's before the softmax."""
    x = layers.Dropout(dropout)(features)
    if units:
        x = layers.Dense(units, activation="relu", kernel_regularizer=reg)(x)
        x = layers.Dropout(dropout)(x)
    # float32 probabilities even under mixed precision, so the exported output and the loss stay exact.
    if wide is None:
        return layers.Dense(classes, activation="softmax", name="probabilities", dtype="float32")(x)
    # Zero weights: training starts from the wide model's predictions exactly, and the network adds to them.
    logits = layers.Dense(classes, dtype="float32", kernel_initializer="zeros", name="deep_logits")(x)
    logits = layers.Add(dtype="float32", name="logits")([logits, wide])
    return layers.Activation("softmax", dtype="float32", name="probabilities")(logits)


# ---------------------------------------------------------------- images


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
    x = _conv(inputs, cfg.filters[0], replace(cfg, batch_norm=True), reg)
    for filters in cfg.filters:
        x = _residual_block(x, filters, reg)
        if _can_pool(x):
            x = layers.MaxPooling2D()(x)
    return layers.GlobalAveragePooling2D()(x)


def _image_separable(inputs: Any, cfg: ImageModelConfig, reg: Any) -> Any:
    x = _conv(inputs, cfg.filters[0], replace(cfg, batch_norm=True), reg)
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


def build_image_model(spec: ImageSpec, cfg: ImageModelConfig, train: TrainConfig) -> keras.Model:
    reg = _regularizer(train)
    inputs = keras.Input((spec.height, spec.width, spec.channels), name="image")
    features = IMAGE_FAMILIES[cfg.architecture](inputs, cfg, reg)
    outputs = _head(features, cfg.dense_units, cfg.dropout, len(spec.labels), reg)
    return keras.Model(inputs, outputs, name=f"image_{cfg.architecture}")


# ---------------------------------------------------------------- texts


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


def _words(ids: Any, spec: TextSpec) -> Any:
    return TakeWords(spec.max_length, name="words")(ids) if spec.input_length > spec.max_length else ids


def _word_embedding(ids: Any, spec: TextSpec, cfg: TextModelConfig) -> Any:
    """Embedded word ids (the word half of the input): a table as large as the vocabulary only."""
    return layers.Embedding(len(spec.vocabulary), cfg.embedding_dim)(_words(ids, spec))


def _text_cnn(ids: Any, spec: TextSpec, cfg: TextModelConfig, reg: Any) -> Any:
    x = _word_embedding(ids, spec, cfg)
    x = layers.Conv1D(cfg.filters, cfg.kernel_size, padding="same", activation="relu", kernel_regularizer=reg)(x)
    return layers.GlobalMaxPooling1D()(x)


def _kim_features(x: Any, cfg: TextModelConfig, reg: Any) -> Any:
    """Convolutions of widths ``kernel_sizes`` over embedded words, each max-pooled, side by side."""
    branches = [
        layers.GlobalMaxPooling1D()(
            layers.Conv1D(cfg.filters, width, padding="same", activation="relu", kernel_regularizer=reg)(x)
        )
        for width in cfg.kernel_sizes
    ]
    return layers.Concatenate()(branches) if len(branches) > 1 else branches[0]


def _text_kim(ids: Any, spec: TextSpec, cfg: TextModelConfig, reg: Any) -> Any:
    return _kim_features(_word_embedding(ids, spec, cfg), cfg, reg)


def _text_bigru(ids: Any, spec: TextSpec, cfg: TextModelConfig, reg: Any) -> Any:
    x = _word_embedding(ids, spec, cfg)
    x = layers.Bidirectional(layers.GRU(cfg.rnn_units, return_sequences=True, kernel_regularizer=reg))(x)
    return layers.GlobalMaxPooling1D()(x)


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


def _text_transformer(ids: Any, spec: TextSpec, cfg: TextModelConfig, reg: Any) -> Any:
    x = _word_embedding(ids, spec, cfg)
    x = PositionEmbedding(spec.max_length, cfg.embedding_dim)(x)
    for _ in range(cfg.layers):
        attended = layers.MultiHeadAttention(cfg.heads, cfg.embedding_dim // cfg.heads, dropout=cfg.dropout)(x, x)
        x = layers.LayerNormalization()(layers.Add()([x, attended]))
        forward = layers.Dense(cfg.embedding_dim * 2, activation="relu", kernel_regularizer=reg)(x)
        forward = layers.Dense(cfg.embedding_dim, kernel_regularizer=reg)(forward)
        x = layers.LayerNormalization()(layers.Add()([x, forward]))
    return layers.GlobalAveragePooling1D()(x)


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
    added: an ensemble of linear models over the same ids (training.models.linear)."""

    def call(self, inputs: Any) -> Any:
        embedded, weights, ids = inputs  # (batch, length, M * classes), (batch, length, M), (batch, length)
        members = weights.shape[-1]
        shape = tf.shape(embedded)
        embedded = tf.reshape(embedded, tf.stack([shape[0], shape[1], members, shape[2] // members]))
        w = weights * tf.cast(tf.not_equal(ids, 0), weights.dtype)[:, :, None]
        norm = tf.sqrt(tf.maximum(tf.reduce_sum(w * w, axis=1), 1e-12))  # (batch, M)
        per_member = tf.reduce_sum(embedded * w[:, :, :, None], axis=1) / norm[:, :, None]
        return tf.reduce_sum(per_member, axis=1)


def _wide(ids: Any, spec: TextSpec, cfg: TextModelConfig) -> Any:
    """The wide half of wide & deep (Cheng et al. 2016): linear models over the (TF-IDF or count) bag whose
    logits join the network's. Their per-id weights and class weights are fitted on the training split in
    closed form and loaded before (joint) or after (blend) the network trains (training.models.linear)."""
    members = cfg.linear_members
    idf = layers.Embedding(
        spec.input_vocabulary, members, embeddings_initializer="ones", trainable=False, name="wide_idf"
    )
    table = layers.Embedding(
        spec.input_vocabulary,
        members * len(spec.labels),
        embeddings_initializer="zeros",
        # blend trains the network alone and sets these afterwards (training.models.linear)
        trainable=cfg.wide_trainable and cfg.wide_mode == "joint",
        name="wide_weights",
    )
    return WeightedBag(name="wide_logits", dtype="float32")([table(ids), idf(ids), ids])


def _deep_ids(ids: Any, spec: TextSpec) -> Any:
    """Word and bigram ids: the character n-gram ids that follow them are the linear half's only."""
    return TakeWords(spec.deep_length, name="word_and_bigram_ids")(ids) if spec.char_buckets else ids


def _text_ngram(ids: Any, spec: TextSpec, cfg: TextModelConfig, reg: Any) -> Any:
    ids = _deep_ids(ids, spec)
    embedded = layers.Embedding(spec.deep_vocabulary, cfg.embedding_dim)(ids)  # words and bigrams alike
    return MeanOfIds()([embedded, ids])


def _text_hybrid(ids: Any, spec: TextSpec, cfg: TextModelConfig, reg: Any) -> Any:
    """Kim's convolutions over the words beside the mean of word and bigram embeddings: word order and
    n-gram evidence in one model, sharing one embedding table."""
    ids = _deep_ids(ids, spec)
    embedded = layers.Embedding(spec.deep_vocabulary, cfg.embedding_dim)(ids)
    words = TakeWords(spec.max_length, name="words")(embedded) if spec.ngram_buckets else embedded
    return layers.Concatenate()([_kim_features(words, cfg, reg), MeanOfIds()([embedded, ids])])


TEXT_FAMILIES: dict[str, Callable[[Any, TextSpec, TextModelConfig, Any], Any]] = {
    "cnn": _text_cnn,
    "kim": _text_kim,
    "bigru": _text_bigru,
    "transformer": _text_transformer,
    "ngram": _text_ngram,
    "hybrid": _text_hybrid,
}


def build_text_model(spec: TextSpec, cfg: TextModelConfig, train: TrainConfig) -> keras.Model:
    reg = _regularizer(train)
    inputs = keras.Input((spec.input_length,), dtype="int32", name="tokens")
    features = TEXT_FAMILIES[cfg.architecture](inputs, spec, cfg, reg)
    wide = _wide(inputs, spec, cfg) if cfg.wide else None
    outputs = _head(features, cfg.dense_units, cfg.dropout, len(spec.labels), reg, wide)
    return keras.Model(inputs, outputs, name=f"text_{cfg.architecture}")


def build_model(spec: Spec, cfg: RunConfig) -> keras.Model:
    if isinstance(spec, ImageSpec):
        return build_image_model(spec, cfg.image_model, cfg.train)
    return build_text_model(spec, cfg.text_model, cfg.train)
