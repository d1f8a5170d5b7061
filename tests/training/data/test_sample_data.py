"""The bundled sample corpus: big enough, several classes, learnable but not keyword-separable."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from training.data.clean import clean_texts
from training.data.sample_data import generate_texts, write_texts_csv


def test_texts_csv_has_600_plus_rows_three_classes_and_some_dirt(tmp_path: Path) -> None:
    path = tmp_path / "texts.csv"
    write_texts_csv(path)
    assert path.read_text().splitlines()[0] == "text,label"
    report = clean_texts(path).report.to_dict()
    assert report["rows_kept"] >= 600 and len(report["classes"]) >= 3
    assert report["duplicates_removed"] > 0 and report["empty_skipped"] > 0
    assert generate_texts() == generate_texts()  # seeded


def test_unigram_keywords_cannot_separate_the_classes_but_word_pairs_can() -> None:
    texts, labels = zip(*generate_texts(), strict=True)
    majority = max(Counter(labels).values()) / len(labels)

    def cv_accuracy(ngrams: tuple[int, int]) -> float:
        x = CountVectorizer(ngram_range=ngrams).fit_transform(texts)
        return float(cross_val_score(LogisticRegression(max_iter=2000), x, labels, cv=5).mean())

    unigram, bigram = cv_accuracy((1, 1)), cv_accuracy((1, 2))
    assert majority + 0.05 < unigram < 0.75  # keywords alone are weak...
    assert bigram > unigram + 0.15  # ...word order and negation carry the class
