"""Pretrained word vectors: read into a vocabulary's rows, initialise the word embedding (static or fine-tuned), and
the report says the coverage."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from serving.preprocess import TextSpec, tokenize
from training.config import ConfigError, TextModelConfig, load_config
from training.models.vectors import read_word_vectors

VOCABULARY = ("", "[UNK]", "good", "bad", "film", "plot", "dull")
VECTORS = {
    "good": [0.5, 0.1, 0.0, 0.2],
    "Bad": [-0.5, 0.3, 0.1, 0.0],
    "film": [0.0, 0.0, 1.0, 0.25],
    "zebra": [9, 9, 9, 9],
}


def write_vectors(path: Path, header: bool = False) -> Path:
    lines = [f"{len(VECTORS)} 4"] * header + [f"{w} {' '.join(str(v) for v in vec)}" for w, vec in VECTORS.items()]
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("name,header", [("glove.txt", False), ("wiki.vec", True), ("glove.txt.gz", False)])
def test_the_vocabulary_rows_come_from_the_file(tmp_path: Path, name: str, header: bool) -> None:
    vectors = read_word_vectors(str(write_vectors(tmp_path / name, header)), VOCABULARY)
    assert vectors.dim == 4 and vectors.matrix.shape == (len(VOCABULARY), 4)
    np.testing.assert_array_equal(vectors.matrix[2], np.float32(VECTORS["good"]))
    np.testing.assert_array_equal(vectors.matrix[3], np.float32(VECTORS["Bad"]))  # case-folded match
    assert not vectors.matrix[0].any()  # padding
    assert vectors.found == 3 and vectors.words == 5
    assert vectors.summary("static") | {"path": ""} == {
        "path": "",
        "mode": "static",
        "dim": 4,
        "vocabulary_words": 5,
        "words_found": 3,
        "coverage": 0.6,
    }
    assert vectors.matrix[5].any()  # a missing word starts random, not zero


def test_a_missing_or_broken_file_is_one_line_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"no file at {tmp_path / 'absent.txt'}"):
        read_word_vectors(str(tmp_path / "absent.txt"), VOCABULARY)
    broken = tmp_path / "broken.txt"
    broken.write_text("good 0.1 0.2 0.3\nbad 0.1\n")
    with pytest.raises(ConfigError, match="line 2: 1 numbers where line 1 had 3"):
        read_word_vectors(str(broken), VOCABULARY)
    broken.write_text("good 0.1 0.2\nbad 0.1 0.2 0.3\n")
    with pytest.raises(ConfigError, match="line 2: 3 numbers where line 1 had 2"):
        read_word_vectors(str(broken), VOCABULARY)
    broken.write_text("zebra 0.1 0.2\n")
    with pytest.raises(ConfigError, match="none of the vocabulary's 5 words"):
        read_word_vectors(str(broken), VOCABULARY)


def test_an_exact_word_wins_over_folded_ones_and_the_first_folded_one_over_later(tmp_path: Path) -> None:
    path = tmp_path / "v.vec"
    path.write_bytes(b"\xef\xbb\xbf3 2\nFilm 1 1\nFILM 2 2\nGood 3 3\ngood 4 4\n")  # a byte-order mark too
    vectors = read_word_vectors(str(path), VOCABULARY)
    assert vectors.matrix[4].tolist() == [1, 1] and vectors.matrix[2].tolist() == [4, 4] and vectors.dim == 2


def test_static_needs_a_words_only_table() -> None:
    with pytest.raises(ValueError, match="vectors_mode static"):
        TextModelConfig(pretrained_vectors="v.txt", vectors_mode="static", architecture="hybrid")
    TextModelConfig(pretrained_vectors="v.txt", vectors_mode="static", architecture="kim")


@pytest.mark.parametrize("architecture,mode", [("cnn", "static"), ("hybrid", "fine_tune")])
def test_the_embedding_starts_from_the_vectors(tmp_path: Path, architecture: str, mode: str) -> None:
    from training.config import TrainConfig
    from training.models.text import build_text_model

    path = str(write_vectors(tmp_path / "v.txt"))
    spec = TextSpec(
        labels=("neg", "pos"), vocabulary=VOCABULARY, max_length=6, ngram_buckets=8 if architecture == "hybrid" else 0
    )
    cfg = TextModelConfig(
        architecture=architecture, pretrained_vectors=path, vectors_mode=mode, embedding_dim=32, filters=8, wide=False
    )
    model = build_text_model(spec, cfg, TrainConfig())
    table = next(layer for layer in model.layers if type(layer).__name__ == "Embedding")
    weights = table.get_weights()[0]
    assert weights.shape == (spec.deep_vocabulary if architecture == "hybrid" else len(VOCABULARY), 4)
    np.testing.assert_array_equal(weights[: len(VOCABULARY)], read_word_vectors(path, VOCABULARY).matrix)
    assert table.trainable is (mode == "fine_tune")


def test_rows_no_fit_moved_become_zero_but_pretrained_word_vectors_stay(tmp_path: Path) -> None:
    from training.config import TrainConfig
    from training.models.text import TOKEN_TABLE, build_text_model, unreached_rows_zeroed

    spec = TextSpec(labels=("neg", "pos"), vocabulary=VOCABULARY, max_length=6, ngram_buckets=8)
    path = str(write_vectors(tmp_path / "v.txt"))
    for vectors in ("", path):
        cfg = TextModelConfig(architecture="hybrid", pretrained_vectors=vectors, filters=8, wide=False)
        model = build_text_model(spec, cfg, TrainConfig())
        table = model.get_layer(TOKEN_TABLE)
        with unreached_rows_zeroed(model, spec, cfg):
            moved = table.get_weights()[0]
            moved[2] += 1.0  # as if a fit had read the row of word id 2
            table.set_weights([moved])
        weights = table.get_weights()[0]
        assert weights[2].any() and not weights[len(VOCABULARY) :].any()  # every bigram bucket was left alone
        if vectors:  # the vectors of words no item used are what the model knows of them
            np.testing.assert_array_equal(weights[3 : len(VOCABULARY)], read_word_vectors(path, VOCABULARY).matrix[3:])
        else:
            assert not np.delete(weights, 2, axis=0).any()


@pytest.mark.slow
def test_a_run_reports_the_coverage_of_the_shipped_vocabulary(tmp_path: Path) -> None:
    from tests.conftest import make_texts
    from training.data.dataset import DataReport, Dataset
    from training.fit.train import train_model

    rows = make_texts(30)
    texts, labels = [t for t, _ in rows], [label for _, label in rows]
    words = sorted({w for t in texts for w in tokenize(t)})
    vectors = tmp_path / "v.txt"
    rng = np.random.default_rng(0)
    vectors.write_text("".join(f"{w} {' '.join(f'{x:.3f}' for x in rng.normal(size=8))}\n" for w in words[::2]))
    half = len(texts) // 2
    train = Dataset("text", texts[:half], labels[:half], texts[:half], DataReport(source="generated"))
    val = Dataset("text", texts[half:], labels[half:], texts[half:], DataReport(source="generated"))
    text_model = {"architecture": "cnn", "pretrained_vectors": str(vectors), "vectors_mode": "static", "filters": 8}
    cfg = load_config(None, {"text_model": text_model, "train": {"epochs": 2, "batch_size": 16}})
    trained = train_model(train, val, cfg)
    report = trained.summary()["pretrained_vectors"]
    assert report["dim"] == 8 and report["mode"] == "static"
    vocabulary = set(trained.spec.vocabulary[2:])
    assert report["vocabulary_words"] == len(vocabulary)
    assert report["words_found"] == len(vocabulary & set(words[::2])) and 0.3 < report["coverage"] < 0.7


def test_tuning_leaves_out_what_the_vectors_fix() -> None:
    from training.fit.tune import DEFAULT_SPACES, fitting_space

    text_model = {"pretrained_vectors": "v.txt", "vectors_mode": "static", "architecture": "kim"}
    space = fitting_space(DEFAULT_SPACES["text"], load_config(None, {"text_model": text_model}))
    assert "text_model.embedding_dim" not in space
    assert space["text_model.architecture"]["choices"] == ["cnn", "kim"]
    assert fitting_space(DEFAULT_SPACES["text"], load_config(None, {})) == DEFAULT_SPACES["text"]
