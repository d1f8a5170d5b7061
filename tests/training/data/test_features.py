"""Specs made from data: the wide half's table held within its weight budget."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from training.config import load_config
from training.data.dataset import DataReport, Dataset
from training.data.features import make_spec


def _many_classes(classes: int = 40) -> Dataset:
    rng = np.random.default_rng(0)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = ["".join(rng.choice(letters, 7)) for _ in range(3000)]
    texts = [" ".join(rng.choice(words, 12)) for _ in range(1500)]
    labels = [f"class{i % classes}" for i in range(len(texts))]
    return Dataset("text", texts, labels, texts, DataReport(source="generated"))


def test_a_many_class_wide_table_is_held_within_its_weight_budget(caplog: pytest.LogCaptureFixture) -> None:
    """With many classes the table (ids x 2 members x classes) would outgrow the data: the buckets the data sized
    are halved, the larger first, until it fits; every linear model choice gets the same spec (auto's choice comes
    after the spec, and the refit must match the selection); buckets set in the configuration are kept as set."""
    train = _many_classes()

    def spec(**text_model: object):  # noqa: ANN202 - a TextSpec
        return make_spec(train, train.label_names, load_config(None, {"text_model": text_model}))

    free = spec(max_wide_weights=None)
    assert (free.ngram_buckets, free.char_buckets) == (65536, 131072)  # room for twice the distinct ones
    budget, columns = 3_000_000, 2 * 40
    bounded = spec(max_wide_weights=budget)
    assert bounded.input_vocabulary * columns <= budget < (bounded.input_vocabulary + bounded.ngram_buckets) * columns
    assert bounded.vocabulary == free.vocabulary and (bounded.ngram_buckets, bounded.char_buckets) == (16384, 16384)
    for choice in ("svm", "svm_nb", "nb_svm", "select"):
        assert spec(max_wide_weights=budget, linear_model=choice) == bounded
    with caplog.at_level(logging.WARNING, logger="training.data.features"):
        kept = spec(max_wide_weights=budget, ngram_buckets=65536)
    assert kept.ngram_buckets == 65536 and kept.char_buckets == 4096  # over budget at the floor, and said so
    assert "text_model.ngram_buckets (65536, as configured)" in caplog.text and "max_wide_weights" in caplog.text


def test_the_bag_gets_bigram_buckets_of_its_own_only_where_the_data_outgrows_the_networks() -> None:
    pool = sorted(set(" ".join(_many_classes(2).inputs).split()))  # 3,000 words

    def spec(texts: int, words: int, **text_model: object):  # noqa: ANN202 - a TextSpec
        rng = np.random.default_rng(1)
        inputs = [" ".join(rng.choice(pool, words)) for _ in range(texts)]
        data = Dataset("text", inputs, ["a", "b"] * (texts // 2), inputs, DataReport(source="generated"))
        return make_spec(data, data.label_names, load_config(None, {"text_model": text_model}))

    few = spec(1000, 12)  # ~11,000 distinct bigrams: the network's 32,768 buckets have room for the bag's too
    assert (few.ngram_buckets, few.bag_bigram_buckets) == (32768, 0)
    many = spec(1500, 60)  # ~88,000: the bag hashes them into 262,144 of its own
    assert (many.ngram_buckets, many.bag_bigram_buckets) == (65536, 262144)
    assert many.char_start == many.deep_vocabulary + 262144
    assert many.input_vocabulary == many.char_start + many.char_buckets
    # a words-only network's bag has no bigrams unless configured; 0 or no bag: none of its own
    assert spec(1500, 60, architecture="kim").bag_bigram_buckets == 0
    assert spec(1500, 60, architecture="kim", bag_bigram_buckets=4096).bag_bigram_buckets == 4096
    assert spec(1500, 60, bag_bigram_buckets=0).bag_bigram_buckets == 0
    assert spec(1500, 60, bag_length=0).bag_bigram_buckets == 0
    # the wide table's budget halves the bag's own buckets first, back to the network's ids once no larger
    budget = (many.input_vocabulary - 131072) * 2 * 2
    assert spec(1500, 60, max_wide_weights=budget).bag_bigram_buckets == 131072
    floors = spec(1500, 60, max_wide_weights=1)  # nothing fits: every bucket count at its floor, the bag shared
    assert (floors.bag_bigram_buckets, floors.ngram_buckets, floors.char_buckets) == (0, 1024, 4096)
