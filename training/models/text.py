"""Text network families by name (``text_model.architecture``): ``cnn`` (one convolution width), ``kim``
(widths 3/4/5 side by side, Kim 2014), ``bigru`` (bidirectional GRU), ``transformer`` (a small encoder with
learned positions), ``ngram`` (a bag of word and hashed-bigram embeddings, fastText-style), ``hybrid`` (kim and
ngram side by side); with ``text_model.wide``, the wide half (linear models over the bag of ids) adds its logits.

Input: int32 ids (words, hashed bigrams, character n-grams: serving.preprocess.encode_texts), so the ONNX
export needs no string ops and serving stays TensorFlow-free; output: the ``probabilities`` layer.

    >>> model = build_text_model(spec, TextModelConfig(), TrainConfig())  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from serving.preprocess import Spec, TextSpec
from training.config import ConfigError, TextModelConfig, TrainConfig
from training.models.head import head, regularizer
from training.models.layers import Bias, MeanOfIds, PositionEmbedding, TakeRange, TakeWords, WeightedBag
from training.models.vectors import read_word_vectors
from training.tf_env import keras, tf

layers = keras.layers
log = logging.getLogger(__name__)

# The network's embedding table (words, and hashed bigrams for ngram and hybrid): one per text network.
TOKEN_TABLE = "token_table"


def _words(ids: Any, spec: TextSpec) -> Any:
    return TakeWords(spec.max_length, name="words")(ids) if spec.input_length > spec.max_length else ids


def _embedded(ids: Any, rows: int, spec: TextSpec, cfg: TextModelConfig) -> Any:
    """``ids`` through an embedding table of ``rows`` (the vocabulary's words first); with pretrained vectors, the
    word rows start as the file's vectors (other rows random with their spread) and ``static`` freezes the table.
    The rows are set as weights once the layer is built, never put into its config."""
    table = layers.Embedding(rows, cfg.embedding_dim, name=TOKEN_TABLE)
    embedded = table(ids)
    if cfg.pretrained_vectors:
        vectors = read_word_vectors(cfg.pretrained_vectors, spec.vocabulary)
        extra = np.random.default_rng(1).normal(0.0, vectors.spread, (rows - len(spec.vocabulary), vectors.dim))
        table.set_weights([np.vstack([vectors.matrix, extra.astype(np.float32)])])
        table.trainable = cfg.vectors_mode == "fine_tune"
    return embedded


def _word_embedding(ids: Any, spec: TextSpec, cfg: TextModelConfig) -> Any:
    """Embedded word ids (the word half of the input): a table as large as the vocabulary only."""
    return _embedded(_words(ids, spec), len(spec.vocabulary), spec, cfg)


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
    if not spec.bag_length:  # the windows' ids, repeated as often as they occur
        return WeightedBag(name="wide_logits", dtype="float32")([table(ids), idf(ids), ids])
    start, k = spec.bag_start, spec.bag_length
    terms = TakeRange(start, start + k, name="bag_ids")(ids)
    counts = TakeRange(start + k, start + 2 * k, name="bag_counts")(ids)
    return WeightedBag(name="wide_logits", dtype="float32")([table(terms), idf(terms), terms, counts])


def _deep_ids(ids: Any, spec: TextSpec) -> Any:
    """Word and bigram ids: the character n-gram ids and the bag that follow them are the linear half's only."""
    return TakeWords(spec.deep_length, name="word_and_bigram_ids")(ids) if spec.input_length > spec.deep_length else ids


def _text_ngram(ids: Any, spec: TextSpec, cfg: TextModelConfig, reg: Any) -> Any:
    ids = _deep_ids(ids, spec)
    embedded = _embedded(ids, spec.deep_vocabulary, spec, cfg)  # words and bigrams alike
    return MeanOfIds()([embedded, ids])


def _text_hybrid(ids: Any, spec: TextSpec, cfg: TextModelConfig, reg: Any) -> Any:
    """Kim's convolutions over the words beside the mean of word and bigram embeddings: word order and
    n-gram evidence in one model, sharing one embedding table."""
    ids = _deep_ids(ids, spec)
    embedded = _embedded(ids, spec.deep_vocabulary, spec, cfg)
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
    cfg = with_vector_width(cfg, spec)
    reg = regularizer(train)
    inputs = keras.Input((spec.input_length,), dtype="int32", name="tokens")
    features = TEXT_FAMILIES[cfg.architecture](inputs, spec, cfg, reg)
    wide = _wide(inputs, spec, cfg) if cfg.wide else None
    outputs = head(features, cfg.dense_units, cfg.dropout, len(spec.labels), reg, wide)
    return keras.Model(inputs, outputs, name=f"text_{cfg.architecture}")


def with_vector_width(cfg: TextModelConfig, spec: TextSpec) -> TextModelConfig:
    """With pretrained vectors, the network is as wide as the file's vectors (text_model.embedding_dim yields)."""
    if not cfg.pretrained_vectors:
        return cfg
    dim = read_word_vectors(cfg.pretrained_vectors, spec.vocabulary).dim
    if cfg.architecture == "transformer" and dim % max(1, cfg.heads):
        raise ConfigError(
            f"text_model.pretrained_vectors are {dim} wide, not a multiple of text_model.heads ({cfg.heads})"
        )
    return cfg.model_copy(update={"embedding_dim": dim})


def vectors_summary(cfg: TextModelConfig, spec: TextSpec) -> dict[str, Any] | None:
    """report.json ``training.pretrained_vectors``: the file, its width and the vocabulary's coverage."""
    if not cfg.pretrained_vectors:
        return None
    return read_word_vectors(cfg.pretrained_vectors, spec.vocabulary).summary(cfg.vectors_mode)


def build_linear_text_model(spec: TextSpec, cfg: TextModelConfig) -> keras.Model:
    """The linear half alone, a model in its own right (``text_linear``): what ships when the network does not
    beat it on validation. No embedding, convolution or dense layer of the network is in its graph."""
    inputs = keras.Input((spec.input_length,), dtype="int32", name="tokens")
    logits = Bias(len(spec.labels), name="linear_bias", dtype="float32")(_wide(inputs, spec, cfg))
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    return keras.Model(inputs, outputs, name="text_linear")


@contextmanager
def unreached_rows_zeroed(model: keras.Model, spec: Spec, cfg: TextModelConfig) -> Iterator[None]:
    """Around a fit: afterwards, the rows of the network's token table that the fit never moved are zero.

    A row moves only when some training item (or its augmented copy) looks it up, so a hashed bigram bucket no
    item reaches keeps its random start: at serving time an unseen bigram landing there adds noise, and those
    incompressible random bytes are most of a text model's size (the bigram buckets are twice the training
    bigrams). Zero, the mean of that start, is all the model knows of such a row. Training is the same as if
    those rows had started at zero, since nothing reads them. Rows of pretrained word vectors keep them; with
    weight decay, unreached rows shrink towards zero by themselves and are left as they are. Models without a
    trainable token table (images, the linear model, frozen vectors) are untouched."""
    table = _token_table(model)
    start = np.array(table.get_weights()[0]) if table is not None and table.trainable else None
    yield
    if start is None:
        return
    weights = table.get_weights()[0]
    unreached = np.all(weights == start, axis=1)
    if isinstance(spec, TextSpec) and cfg.pretrained_vectors:
        unreached[: len(spec.vocabulary)] = False
    weights[unreached] = 0.0
    table.set_weights([weights])
    log.info("token table: %s of %s rows no training item reached set to zero", unreached.sum(), len(weights))


def _token_table(model: keras.Model) -> Any:
    return next((layer for layer in model.layers if layer.name == TOKEN_TABLE), None)


def text_signature(spec: TextSpec) -> tuple[tf.TensorSpec, ...]:
    """The ONNX input: int32 ids (N, input_length)."""
    return (tf.TensorSpec((None, spec.input_length), tf.int32, name="tokens"),)
