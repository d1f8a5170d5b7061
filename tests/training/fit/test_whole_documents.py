"""Long documents are read whole: the linear half's bag holds every token, with sublinear term weighting."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from serving.preprocess import TextSpec, bag_terms, encode_texts, spec_from_dict, token_index
from training.data.dataset import DataReport, Dataset

FILLER = [
    "the",
    "report",
    "was",
    "filed",
    "on",
    "time",
    "and",
    "then",
    "read",
    "by",
    "every",
    "member",
    "of",
    "the",
    "board",
]


def _document(label_word: str, variant: int = 0, at: int = 2000, length: int = 2100) -> str:
    """The same long filler for every document (a few words rotated by ``variant``), the label's word at ``at``."""
    words = [FILLER[(i + variant) % len(FILLER)] for i in range(length)]
    words[at] = label_word
    return " ".join(words)


def test_the_bag_counts_every_token_and_keeps_a_rare_word_ahead_of_rare_n_grams() -> None:
    vocabulary = ("", "[UNK]", "common", "rare")
    spec = TextSpec(labels=("a", "b"), vocabulary=vocabulary, max_length=4, ngram_buckets=64, bag_length=3)
    tokens = ["common"] * 5000 + ["unknown"] + ["rare"]
    ids, counts = bag_terms(tokens, spec, token_index(spec))
    # the most frequent first (the word, then its bigram); among the terms seen once, the word before bigrams
    assert ids[0] == 2 and ids[2] == 3 and counts.tolist() == [5000, 4999, 1]
    assert 1 not in ids.tolist()  # the unknown word's id is not a term
    row = encode_texts([" ".join(tokens)], spec)[0]
    assert row.tolist()[: spec.max_length] == [2, 2, 2, 2]  # the network's window: the first words
    assert row[spec.bag_start : spec.bag_start + 3].tolist() == ids.tolist()
    assert row[spec.bag_start + 3 :].tolist() == counts.tolist()


@pytest.mark.parametrize("own_bigrams", [0, 256])
def test_a_document_encodes_the_same_alone_and_among_many(own_bigrams: int) -> None:
    # encode_texts counts the bags of many documents together, in groups (BAG_GROUP_DOCS, BAG_GROUP_IDS): no row
    # may see another's terms, whichever group it falls in. Short, empty, unknown-only and very long documents.
    vocabulary = ("", "[UNK]", *FILLER[:8], "aurora", "penguin")
    spec = TextSpec(
        labels=("a", "b"), vocabulary=vocabulary, max_length=4, ngram_buckets=64, char_buckets=32, char_length=8,
        bag_length=6, bag_bigram_buckets=own_bigrams,
    )  # fmt: skip
    lengths = [5 + i % 50 for i in range(300)]
    texts = [_document(["aurora", "penguin"][i % 2], i, at=i % n, length=n) for i, n in enumerate(lengths)]
    texts[7], texts[8], texts[9] = "", "zebra zebra okapi", _document("aurora", length=60_000)
    together = encode_texts(texts, spec)
    alone = [encode_texts([text], spec)[0] for text in texts]
    assert [row.tolist() for row in together] == [row.tolist() for row in alone]
    assert together[8, spec.bag_start :].any() and not together[7].any()  # unknown words still have n-grams


def test_the_bag_can_hash_its_bigrams_apart_from_the_networks() -> None:
    vocabulary = ("", "[UNK]", *FILLER[:8])
    shared = TextSpec(
        labels=("a", "b"), vocabulary=vocabulary, max_length=4, ngram_buckets=16, char_buckets=32, bag_length=400
    )
    own = dataclasses.replace(shared, bag_bigram_buckets=64)
    assert (own.deep_vocabulary, own.char_start, own.input_vocabulary) == (26, 90, 122)
    texts = [" ".join(FILLER * 3), "the report was filed"]
    before, after = encode_texts(texts, shared), encode_texts(texts, own)
    assert (before[:, : own.deep_length] == after[:, : own.deep_length]).all()  # the network's windows: the same

    def bigrams(row: np.ndarray, spec: TextSpec, low: int, high: int) -> set[int]:
        bag = row[spec.bag_start : spec.bag_start + spec.bag_length]
        return set(bag[(bag >= low) & (bag < high)].tolist())

    # the bag's bigrams leave the network's range for their own; the character n-grams follow them
    assert not bigrams(after[0], own, len(vocabulary), own.deep_vocabulary)
    assert bigrams(after[1], own, own.deep_vocabulary, own.char_start) and bigrams(after[1], own, own.char_start, 122)
    # the first text's 15 distinct bigrams collide in the network's 16 buckets, far less in 64 of their own
    apart = bigrams(after[0], own, own.deep_vocabulary, own.char_start)
    assert len(apart) > len(bigrams(before[0], shared, len(vocabulary), shared.deep_vocabulary))
    # a spec stored without the field (older versions) reads as shared ids and is written so again
    assert "bag_bigram_buckets" not in shared.to_dict() and spec_from_dict(shared.to_dict()) == shared
    assert spec_from_dict(own.to_dict()) == own and own.to_dict()["bag_bigram_buckets"] == 64
    # a words-only network: no bigram window, the bag's bigrams in their own range all the same
    words_only = dataclasses.replace(own, ngram_buckets=0)
    row = encode_texts(texts[:1], words_only)[0]
    assert words_only.deep_length == 4 and bigrams(row, words_only, len(vocabulary), words_only.char_start)


@pytest.mark.slow
def test_a_label_deciding_word_at_position_2000_changes_the_prediction() -> None:
    from training.config import load_config
    from training.data.features import to_inputs
    from training.fit.train import train_model

    def split(n: int, offset: int) -> Dataset:
        labels = ["north" if i % 2 else "south" for i in range(n)]
        words = {"north": "aurora", "south": "penguin"}
        texts = [_document(words[label], variant=(offset + i) // 2) for i, label in enumerate(labels)]
        return Dataset("text", texts, labels, texts, DataReport(source="generated"))

    train, val = split(40, 0), split(12, 40)
    small = {"embedding_dim": 8, "filters": 8, "dense_units": 8, "kernel_sizes": [3]}
    cfg = load_config(None, {"text_model": small, "train": {"epochs": 2, "batch_size": 16}})
    trained = train_model(train, val, cfg)
    assert trained.spec.max_length <= 512 < 2000  # the network's window never reaches the deciding word
    probe = [_document(word, variant=3) for word in ("aurora", "penguin")]
    docs = Dataset("text", probe, ["north", "south"], probe, DataReport(source="probe"))
    predicted = trained.model.predict(to_inputs(docs, trained.spec), verbose=0).argmax(axis=1)
    assert [trained.spec.labels[i] for i in predicted] == ["north", "south"]
