"""The wide half of wide & deep: the Keras layer computes exactly the TF-IDF bag the warm start fits,
and a warm-started model predicts what the fitted logistic regression predicts before any training."""

from __future__ import annotations

import numpy as np
import pytest

from serving.preprocess import TextSpec, encode_texts
from training.config import load_config
from training.models import build_model
from training.tf_env import keras, set_seed
from training.wide import bag, fit_linear, inverse_document_frequency, warm_start

pytestmark = pytest.mark.slow

WORDS = ("", "[UNK]", "good", "bad", "film", "plot", "not", "great", "dull")


def _data(n: int, seed: int) -> tuple[TextSpec, np.ndarray, np.ndarray]:
    spec = TextSpec(labels=("neg", "mixed", "pos"), vocabulary=WORDS, max_length=6, ngram_buckets=32)
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS[2:], int(rng.integers(1, 7)))) for _ in range(n)]
    score = np.array([t.count("good") + t.count("great") - t.count("bad") - t.count("dull") for t in texts])
    return spec, encode_texts(texts, spec), np.digitize(score, [-0.5, 0.5])


def _model(spec: TextSpec) -> keras.Model:
    small = {"embedding_dim": 8, "filters": 4, "dense_units": 8, "wide": True, "wide_trainable": True}
    return build_model(spec, load_config(None, {"text_model": small | {"ngram_buckets": 32}}))


def test_layer_matches_the_bag_features() -> None:
    set_seed(0)
    spec, x, _ = _data(40, 0)
    model = _model(spec)
    rng = np.random.default_rng(1)
    idf = inverse_document_frequency(x, spec.input_vocabulary)
    weights = rng.normal(size=(spec.input_vocabulary, 3)).astype("float32")
    model.get_layer("wide_idf").set_weights([idf[:, None].astype("float32")])
    model.get_layer("wide_weights").set_weights([weights])
    wide = keras.Model(model.input, model.get_layer("wide_logits").output)
    np.testing.assert_allclose(wide.predict(x, verbose=0), bag(x, idf) @ weights, rtol=1e-4, atol=1e-5)
    # a row of padding only (an empty text) gives zero logits, not NaN
    assert np.all(wide.predict(np.zeros((1, x.shape[1]), "int32"), verbose=0) == 0)


def test_warm_start_reproduces_the_linear_model() -> None:
    set_seed(0)
    spec, x, y = _data(200, 0)
    _, xv, yv = _data(60, 1)
    model = _model(spec)
    fitted = warm_start(model, x, y, xv, yv, balanced=False)
    assert fitted is not None and fitted["val_accuracy"] > 0.6  # the sentiment rule is learnable
    idf = inverse_document_frequency(x, spec.input_vocabulary)
    weights, bias, c, _ = fit_linear(bag(x, idf), y, bag(xv, idf), yv, 3, balanced=False)
    assert c == fitted["C"]
    logits = bag(xv, idf) @ weights + bias
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(model.predict(xv, verbose=0), expected, atol=1e-4)


def test_binary_and_missing_classes_fill_every_column() -> None:
    spec, x, y = _data(100, 0)
    y = (y == 2).astype(int)  # only classes 0 and 1 present out of 3
    idf = inverse_document_frequency(x, spec.input_vocabulary)
    weights, bias, _, _ = fit_linear(bag(x, idf), y, bag(x, idf), y, 3, balanced=True)
    assert weights.shape == (spec.input_vocabulary, 3) and not weights[:, 2].any() and bias[2] == 0
    np.testing.assert_allclose(weights[:, 0], -weights[:, 1])  # the binary model split across two logits


def test_models_without_a_wide_half_are_left_alone() -> None:
    spec, x, y = _data(20, 0)
    model = build_model(spec, load_config(None, {"text_model": {"architecture": "cnn", "filters": 4, "wide": False}}))
    before = [w.copy() for w in model.get_weights()]
    assert warm_start(model, x, y, x, y, balanced=False) is None
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
