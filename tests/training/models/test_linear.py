"""The wide half of wide & deep: the Keras layer computes exactly the bags the linear models are fitted on,
a warm-started model predicts what the fitted linear model (or ensemble) predicts, a blended model what the
chosen mix of network and linear logits predicts, and a network that does not help is dropped."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from serving.preprocess import TextSpec, encode_texts
from training.config import TextModelConfig, load_config
from training.data.dataset import DataReport, Dataset
from training.data.features import encode_labels, make_spec, to_inputs
from training.fit.train import fit_wide, train_model
from training.fit.tune import shipped_scores
from training.kinds import kind_of
from training.models.linear import (
    bag,
    blend,
    char_weight,
    choose_blend,
    counts,
    deep_logits,
    fit_linear,
    fit_linear_models,
    fit_naive_bayes,
    inverse_document_frequency,
    linear_model,
    nb_ratio,
    network_helps,
    refit_linear_models,
    temperature,
    terms,
    warm_start,
)
from training.tf_env import keras, set_seed

pytestmark = pytest.mark.slow

WORDS = ("", "[UNK]", "good", "bad", "film", "plot", "not", "great", "dull")


def _data(n: int, seed: int) -> tuple[TextSpec, np.ndarray, np.ndarray]:
    spec = TextSpec(labels=("neg", "mixed", "pos"), vocabulary=WORDS, max_length=6, ngram_buckets=32)
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS[2:], int(rng.integers(1, 7)))) for _ in range(n)]
    score = np.array([t.count("good") + t.count("great") - t.count("bad") - t.count("dull") for t in texts])
    return spec, encode_texts(texts, spec), np.digitize(score, [-0.5, 0.5])


def _model(spec: TextSpec, linear_model: str = "ensemble") -> keras.Model:
    small = {"embedding_dim": 8, "filters": 4, "dense_units": 8, "wide": True, "linear_model": linear_model}
    return kind_of(spec.kind).build_model(spec, load_config(None, {"text_model": small | {"ngram_buckets": 32}}))


@pytest.mark.parametrize("members", [1, 2])
def test_layer_matches_the_bag_features(members: int) -> None:
    set_seed(0)
    spec, x, _ = _data(40, 0)
    model = _model(spec, "ensemble" if members == 2 else "select")
    rng = np.random.default_rng(1)
    idf = inverse_document_frequency(x, spec.input_vocabulary)
    id_weights = np.stack([idf, np.ones_like(idf)][:members], axis=1)  # TF-IDF and count bags, each normalised
    weights = rng.normal(size=(spec.input_vocabulary, members, 3))
    model.get_layer("wide_idf").set_weights([id_weights.astype("float32")])
    model.get_layer("wide_weights").set_weights([weights.reshape(len(idf), members * 3).astype("float32")])
    wide = keras.Model(model.input, model.get_layer("wide_logits").output)
    expected = sum(bag(x, id_weights[:, m]) @ weights[:, m] for m in range(members))
    np.testing.assert_allclose(wide.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)
    # a row of padding only (an empty text) gives zero logits, not NaN
    assert np.all(wide.predict(np.zeros((1, x.shape[1]), "int32"), verbose=0) == 0)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("how", ["ensemble", "select"])
def test_warm_start_reproduces_the_linear_model(how: str) -> None:
    set_seed(0)
    spec, x, y = _data(200, 0)
    _, xv, yv = _data(60, 1)
    model = _model(spec, how)
    fit = fit_linear_models(x, y, xv, yv, spec.input_vocabulary, 3, balanced=False, how=how)
    assert fit.val_accuracy > 0.6  # the sentiment rule is learnable
    warm_start(model, fit)
    np.testing.assert_allclose(model.predict(xv, verbose=0), _softmax(fit.logits(xv)), atol=1e-4)


def test_the_ensemble_adds_the_calibrated_models() -> None:
    spec, x, y = _data(200, 0)
    _, xv, yv = _data(60, 1)
    fit = fit_linear_models(x, y, xv, yv, spec.input_vocabulary, 3, balanced=False)
    assert fit.name == "ensemble" and fit.params["members"] == ["logistic_regression", "naive_bayes"]
    assert set(fit.tried) == {"logistic_regression", "naive_bayes", "ensemble"}
    idf = inverse_document_frequency(x, spec.input_vocabulary)
    ones = np.ones(spec.input_vocabulary)
    lr_weights, lr_bias, _, _ = fit_linear(bag(x, idf), y, bag(xv, idf), yv, 3, balanced=False)
    nb_weights, nb_bias, _, _ = fit_naive_bayes(counts(x, len(ones)), y, bag(xv, ones), yv, 3, balanced=False)
    lr_logits, nb_logits = bag(xv, idf) @ lr_weights + lr_bias, bag(xv, ones) @ nb_weights + nb_bias
    t_lr, t_nb = temperature(lr_logits, yv), temperature(nb_logits, yv)
    w_lr, w_nb = fit.params["member_weights"]
    assert w_lr == pytest.approx(t_lr / (t_lr + t_nb), abs=1e-4) and w_lr + w_nb == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(fit.logits(xv), (t_lr * lr_logits + t_nb * nb_logits) / (t_lr + t_nb), atol=1e-3)
    assert fit.val_accuracy == pytest.approx(np.mean(fit.logits(xv).argmax(1) == yv))


def test_the_better_linear_model_on_validation_is_kept() -> None:
    spec, x, y = _data(200, 0)
    _, xv, yv = _data(60, 1)
    fit = fit_linear_models(x, y, xv, yv, spec.input_vocabulary, 3, balanced=False, how="select")
    assert set(fit.tried) == {"logistic_regression", "naive_bayes"}
    assert round(fit.val_accuracy, 4) == max(fit.tried.values())
    assert fit.tried[fit.name] == round(fit.val_accuracy, 4)
    # naive Bayes is scored as the model computes it: the count bag over sqrt(tokens), ones as id weights
    idf = inverse_document_frequency(x, spec.input_vocabulary)
    lr_weights, lr_bias, _, lr_score = fit_linear(bag(x, idf), y, bag(xv, idf), yv, 3, balanced=False)
    ones = np.ones(spec.input_vocabulary)
    nb_weights, nb_bias, _, nb_score = fit_naive_bayes(counts(x, len(ones)), y, bag(xv, ones), yv, 3, balanced=False)
    assert fit.tried == {"logistic_regression": round(lr_score, 4), "naive_bayes": round(nb_score, 4)}
    np.testing.assert_allclose(nb_weights.mean(axis=1), 0, atol=1e-9)  # centred rows: same softmax, small values
    # with no validation split there is nothing to choose on: logistic regression
    empty = fit_linear_models(x, y, xv[:0], yv[:0], spec.input_vocabulary, 3, balanced=False, how="select")
    assert empty.name == "logistic_regression"


def test_blend_reproduces_the_chosen_mix_and_is_no_worse_than_either_half() -> None:
    set_seed(0)
    spec, x, y = _data(200, 0)
    _, xv, yv = _data(80, 1)
    model = _model(spec)  # an untrained network: random hidden layers, its output layer at zero...
    kernel, bias = model.get_layer("deep_logits").get_weights()
    rng = np.random.default_rng(2)
    model.get_layer("deep_logits").set_weights(
        [rng.normal(size=kernel.shape).astype("float32"), bias]
    )  # ...made random
    fit = fit_linear_models(x, y, xv, yv, spec.input_vocabulary, 3, balanced=False)
    network = deep_logits(model, xv)
    scale_d, scale_l, share, score = choose_blend(network, fit.logits(xv), yv)
    summary = blend(model, fit, xv, yv)
    assert summary["linear_share"] == round(share, 2) and summary["blend_val_accuracy"] == round(score, 4)
    # the grid holds both halves alone (share 0 and 1), so the blend is at least as good as either
    assert score >= max(summary["network_val_accuracy"], round(fit.val_accuracy, 4)) - 1e-9
    expected = _softmax(scale_d * network + scale_l * fit.logits(xv))
    probabilities = model.predict(xv, verbose=0)
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    assert np.mean(probabilities.argmax(1) == yv) == pytest.approx(score)


def test_a_network_that_does_not_help_on_validation_is_dropped() -> None:
    set_seed(0)
    spec, x, y = _data(200, 0)
    _, xv, yv = _data(80, 1)
    fit = fit_linear_models(x, y, xv, yv, spec.input_vocabulary, 3, balanced=False)
    model = _model(spec)
    warm_start(model, fit)
    kernel, bias = model.get_layer("deep_logits").get_weights()
    noise = np.random.default_rng(3).normal(scale=50, size=kernel.shape).astype("float32")
    model.get_layer("deep_logits").set_weights([noise, bias])  # a network that drowns the linear half
    assert np.mean(model.predict(xv, verbose=0).argmax(1) == yv) < fit.val_accuracy
    summary = network_helps(model, fit, xv, yv)
    assert summary["network_kept"] is False and summary["joint_val_accuracy"] < fit.val_accuracy
    # what ships instead is the linear model on its own: its predictions, and no layer of the network
    alone = linear_model(spec, TextModelConfig(architecture="ngram", embedding_dim=8, dense_units=0), fit)
    np.testing.assert_allclose(alone.predict(xv, verbose=0), _softmax(fit.logits(xv)), atol=1e-4)
    kinds = {type(layer).__name__ for layer in alone.layers}
    assert kinds == {"InputLayer", "Embedding", "WeightedBag", "Bias", "Activation"}
    assert {layer.name for layer in alone.layers if type(layer).__name__ == "Embedding"} == {
        "wide_idf",
        "wide_weights",
    }
    # a model that beats the linear half it is compared with keeps its network
    worse = dataclasses.replace(fit, weights=-fit.weights, bias=-fit.bias)
    assert network_helps(model, worse, xv, yv)["network_kept"] is True


def test_binary_and_missing_classes_fill_every_column() -> None:
    spec, x, y = _data(100, 0)
    y = (y == 2).astype(int)  # only classes 0 and 1 present out of 3
    idf = inverse_document_frequency(x, spec.input_vocabulary)
    weights, bias, _, _ = fit_linear(bag(x, idf), y, bag(x, idf), y, 3, balanced=True)
    assert weights.shape == (spec.input_vocabulary, 3) and not weights[:, 2].any() and bias[2] == 0
    np.testing.assert_allclose(weights[:, 0], -weights[:, 1])  # the binary model split across two logits
    ones = np.ones(spec.input_vocabulary)
    weights, bias, _, _ = fit_naive_bayes(counts(x, len(ones)), y, bag(x, ones), y, 3, balanced=False)
    logits = np.asarray(bag(x, ones) @ weights) + bias
    assert weights.shape == (spec.input_vocabulary, 3) and not weights[:, 2].any()
    assert not (logits.argmax(1) == 2).any()  # a class never seen in training is never predicted


@pytest.mark.parametrize("bag_length", [0, None])
def test_character_ngrams_leave_the_spec_when_the_chosen_model_does_not_read_them(bag_length: int | None) -> None:
    """Windows only (bag_length 0) or the whole-document bag (None, the default): either way unread n-grams go."""
    train = _texts(120, 0)
    text_model = {"max_length": 8, "bag_length": bag_length}
    cfg = load_config(None, {"text_model": text_model | {"linear_model": "select"}})
    spec = make_spec(train, train.label_names, cfg)
    assert spec.char_buckets and (spec.char_length if bag_length == 0 else spec.bag_length and not spec.char_length)
    # validation = training: every candidate scores 1.0, and the tie goes to the simpler words-only model
    final, fit = fit_wide(train, train, spec, cfg, balanced=False)
    assert fit is not None and not fit.reads(spec.char_start)
    assert final.char_buckets == 0 and final.input_length == spec.deep_length + 2 * spec.bag_length
    assert len(fit.id_weights) == len(fit.weights) == final.input_vocabulary
    # the ensemble's logistic regression and the default's linear SVM read them: they stay
    for choice in ("ensemble", "auto"):
        chosen_cfg = load_config(None, {"text_model": text_model | {"linear_model": choice}})
        kept, fit = fit_wide(train, train, spec, chosen_cfg, balanced=False)
        assert fit is not None and fit.reads(spec.char_start) and kept == spec
        assert fit.name in (("ensemble",) if choice == "ensemble" else ("linear_svm", "ensemble"))
    # a model without a wide half fits nothing and keeps its spec
    off = load_config(None, {"text_model": text_model | {"wide": False}})
    plain = make_spec(train, train.label_names, off)
    assert plain.char_buckets == 0 and plain.bag_length == 0
    assert kind_of(train.task).fit_linear(train, train, plain, off, balanced=False) == (plain, None)


def test_nbsvm_weighs_each_term_by_how_well_it_tells_the_two_classes_apart() -> None:
    """NBSVM (text_model.linear_model nb_svm): the per-id weights are the IDF times |log-count ratio|; the refit
    counts the ratio again; more than two classes get the SVM."""
    spec = TextSpec(labels=("neg", "pos"), vocabulary=("", "[UNK]", "good", "bad", "plot", "film"), max_length=4)
    texts = ["good plot", "good film", "good", "bad plot", "bad film", "bad"] * 10
    y = np.array([1, 1, 1, 0, 0, 0] * 10)
    x = encode_texts(texts, spec)
    ratio = nb_ratio(terms(x), y, spec.input_vocabulary)
    assert ratio is not None
    good, bad, plot = (spec.vocabulary.index(w) for w in ("good", "bad", "plot"))
    assert ratio[good] == pytest.approx(ratio[bad]) and ratio[good] > 2.0 and ratio[plot] == pytest.approx(0.0)
    assert nb_ratio(terms(x), np.zeros_like(y), spec.input_vocabulary) is None  # one class: nothing to compare
    fit = fit_linear_models(x, y, x, y, spec.input_vocabulary, 2, False, how="nb_svm")
    idf = inverse_document_frequency(x, spec.input_vocabulary)
    assert fit.name == "nb_svm" and fit.val_accuracy == 1.0
    np.testing.assert_allclose(fit.id_weights[:, 0], idf * ratio)
    again = refit_linear_models(fit, x[:30], y[:30], spec.input_vocabulary, 2, False)
    assert again.name == "nb_svm" and (again.logits(x).argmax(axis=1) == y).all()
    np.testing.assert_allclose(
        again.id_weights[:, 0], inverse_document_frequency(x[:30], 6) * nb_ratio(terms(x[:30]), y[:30], 6)
    )
    y3 = np.arange(len(y)) % 3
    three = fit_linear_models(x, y3, x, y3, spec.input_vocabulary, 3, False, how="nb_svm")
    assert three.name == "linear_svm"  # the ratio compares two classes


def _texts(n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS[2:], int(rng.integers(2, 7)))) + f" item{seed}x{i}" for i in range(n)]
    labels = ["pos" if t.count("good") + t.count("great") > t.count("bad") + t.count("dull") else "neg" for t in texts]
    return Dataset("text", texts, labels, texts, DataReport(source="generated"))


@pytest.mark.parametrize("mode", ["joint", "blend"])
def test_training_reports_the_wide_half_and_the_model_predicts_the_blend(mode: str) -> None:
    train, val = _texts(160, 0), _texts(60, 1)
    small = {"embedding_dim": 8, "filters": 4, "dense_units": 8, "max_length": 8, "wide_mode": mode}
    cfg = load_config(None, {"text_model": small, "train": {"epochs": 3, "batch_size": 32}})
    trained = train_model(train, val, cfg)
    wide = trained.wide
    assert wide is not None and wide["mode"] == mode
    # the default (auto): the linear SVM alone or with naive Bayes, chosen by cross-validation
    assert wide["linear_model"] in ("linear_svm", "ensemble") and wide["chosen_by"] == "5-fold cross-validation"
    if wide["linear_model"] == "ensemble":
        assert wide["members"] == ["linear_svm", "naive_bayes"]
    assert {"cv_linear_svm", "cv_ensemble", "linear_svm", "naive_bayes"} <= set(wide["candidates"])
    assert trained.spec.char_buckets  # the linear SVM reads the character n-grams
    assert trained.summary()["wide"] == wide
    assert trained.model.get_layer("wide_weights").get_weights()[0].any()  # the linear half is in the model
    # tuning scores the model as it ships (training.fit.tune.shipped_scores), not the best epoch's curve
    loss, accuracy, per_item = shipped_scores(trained, val, cfg)
    assert np.isfinite(loss) and loss >= 0
    assert len(per_item.losses) == len(val) and np.mean(per_item.losses) == pytest.approx(loss)  # for the paired test
    if mode == "joint":  # the network is kept only when it beats the linear half alone on validation
        assert wide["network_kept"] == (wide["joint_val_accuracy"] > wide["val_accuracy"])
        shipped = wide["joint_val_accuracy"] if wide["network_kept"] else wide["val_accuracy"]
        assert accuracy == pytest.approx(shipped, abs=1e-4)
    if mode == "blend":
        ids, y = to_inputs(val, trained.spec), encode_labels(val.labels, trained.spec.labels)
        predicted = trained.model.predict(ids, verbose=0).argmax(1)
        assert np.mean(predicted == y) == pytest.approx(wide["blend_val_accuracy"], abs=1e-4)
        assert accuracy == pytest.approx(wide["blend_val_accuracy"], abs=1e-4)
        assert wide["blend_val_accuracy"] >= max(wide["network_val_accuracy"], wide["val_accuracy"])


def test_character_ngrams_carry_misspellings_and_are_chosen_when_they_score_better() -> None:
    rng = np.random.default_rng(0)
    filler = ["film", "plot", "actor", "scene"]

    def texts(n: int, good: str, bad: str) -> tuple[list[str], np.ndarray]:
        y = rng.integers(0, 2, n)
        return [f"{rng.choice(filler)} {good if label else bad} {rng.choice(filler)}" for label in y], y

    train, y = texts(120, "wonderful", "terrible")
    val, yv = texts(60, "wonderfull", "terribble")  # misspelt: unknown words, shared character n-grams
    spec = TextSpec(
        labels=("neg", "pos"),
        vocabulary=("", "[UNK]", *filler, "wonderful", "terrible"),
        max_length=4,
        char_buckets=4096,
        char_length=64,
    )
    x, xv = encode_texts(train, spec), encode_texts(val, spec)
    fit = fit_linear_models(x, y, xv, yv, spec.input_vocabulary, 2, False, spec.char_start, how="select")
    assert set(fit.tried) == {"logistic_regression", "naive_bayes", "logistic_regression_chars"}
    assert fit.tried["logistic_regression"] <= 0.75  # the words alone cannot read the misspellings
    assert fit.name == "logistic_regression_chars" and fit.val_accuracy == 1.0
    # the n-gram block is weighted to carry about as much of the norm as the words
    idf = inverse_document_frequency(x, spec.input_vocabulary)
    weight = char_weight(x, idf, spec.char_start)
    occurrence = np.where(x != 0, fit.id_weights[:, 0][x] ** 2, 0.0)
    words, chars = occurrence[:, : spec.deep_length].sum(1), occurrence[:, spec.deep_length :].sum(1)
    assert 0 < weight < 1 and np.median(words / chars) == pytest.approx(1.0, rel=1e-6)
    # without them chosen, a model gives the n-gram ids no weight: the layer ignores them
    words_only = fit_linear_models(x, y, x, y, spec.input_vocabulary, 2, False, spec.char_start, how="select")
    assert words_only.name != "logistic_regression_chars" and not words_only.reads(spec.char_start)
