"""Pretrained word vectors (``text_model.pretrained_vectors``): a GloVe or fastText text file read into the rows of
a vocabulary, to initialise the network's word embedding.

The file is streamed once per vocabulary and only the vocabulary's words are parsed, so a multi-gigabyte file costs
one pass and no more memory than the table. A fastText ``.vec`` header line (count and width) is skipped; ``.gz`` is
read as is. Words are matched as the tokenizer writes them (standardised: lower case); an exact match wins over a
folded one. Vocabulary words the file lacks start random, with the spread of the vectors found; padding is zero.

    >>> vectors = read_word_vectors("glove.6B.100d.txt", spec.vocabulary)  # doctest: +SKIP
    >>> vectors.summary("fine_tune")["coverage"]  # doctest: +SKIP
    0.9132
"""

from __future__ import annotations

import functools
import gzip
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from serving.preprocess import standardize
from training.config import ConfigError

log = logging.getLogger(__name__)

SPECIAL_ROWS = 2  # padding (0) and the unknown word (1) lead every vocabulary


@dataclass(frozen=True)
class WordVectors:
    """A vocabulary's rows: (len(vocabulary), dim) float32, and how many of its words the file had."""

    matrix: np.ndarray
    found: int
    words: int
    path: str
    spread: float  # the standard deviation of the vectors found: new rows (missing words, bigrams) are drawn with it

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def summary(self, mode: str) -> dict[str, Any]:
        """report.json ``training.pretrained_vectors``."""
        return {
            "path": self.path,
            "mode": mode,
            "dim": self.dim,
            "vocabulary_words": self.words,
            "words_found": self.found,
            "coverage": round(self.found / self.words, 4) if self.words else 0.0,
        }


def _open(path: Path) -> IO[str]:
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115 - returned open
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace")


def read_word_vectors(path: str, vocabulary: tuple[str, ...], seed: int = 0) -> WordVectors:
    """The rows of ``vocabulary`` (index 0 padding, 1 the unknown word) from the vectors file at ``path``.
    Raises ConfigError naming the file and what is wrong with it. Cached per file version: a replaced file is read
    again."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(
            f"text_model.pretrained_vectors: no file at {file}; place a GloVe or fastText text file there "
            "(a word, then its numbers, per line; .gz is read too)"
        )
    stat = file.stat()
    return _read(str(file), stat.st_mtime_ns, stat.st_size, vocabulary, seed)


@functools.lru_cache(maxsize=4)
def _read(path: str, mtime_ns: int, size: int, vocabulary: tuple[str, ...], seed: int) -> WordVectors:
    file = Path(path)
    index = {word: i for i, word in enumerate(vocabulary) if i >= SPECIAL_ROWS}
    rows: dict[int, np.ndarray] = {}
    exact: set[int] = set()
    dim = 0
    with _open(file) as fh:
        for number, line in enumerate(fh, 1):
            parts = line.rstrip("\n\r ").split(" ")
            if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # fastText's "count width" header
            if len(parts) < 2:
                continue
            dim = dim or _width(parts, file, number)
            word = _word(parts, dim, file, number)
            key = word if word in index else standardize(word)
            i = index.get(key)
            if i is None or i in exact or (word != key and i in rows):
                continue  # an exact match wins over a folded one; among folded ones, the first
            rows[i] = _vector(parts[-dim:], file, number)
            if word == key:
                exact.add(i)
    if not dim:
        raise ConfigError(f"text_model.pretrained_vectors: {file} holds no word vectors (a word, then numbers)")
    if not rows:
        raise ConfigError(
            f"text_model.pretrained_vectors: none of the vocabulary's {len(index):,} words is in {file} (its words "
            "are matched lower-cased, as the tokenizer writes them); is it a word-vector file for this language?"
        )
    return _table(rows, len(vocabulary), dim, str(file), seed)


def _word(parts: list[str], dim: int, file: Path, number: int) -> str:
    """The word before a line's ``dim`` numbers (GloVe has a few words with spaces). A line with more numbers than
    the first one is a broken file, not a longer word."""
    if len(parts) < dim + 1:
        raise ConfigError(f"{file}, line {number}: {len(parts) - 1} numbers where line 1 had {dim}")
    head = parts[:-dim]
    if len(head) > 1 and all(_is_number(p) for p in head[1:]):
        raise ConfigError(f"{file}, line {number}: {len(parts) - 1} numbers where line 1 had {dim}")
    return " ".join(head)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _width(parts: list[str], file: Path, number: int) -> int:
    """The first vector line's numbers after its word: the file's width."""
    if not all(_is_number(p) for p in parts[1:]):
        raise ConfigError(f"{file}, line {number}: not a word vector (a word, then numbers separated by spaces)")
    return len(parts) - 1


def _vector(numbers: list[str], file: Path, number: int) -> np.ndarray:
    try:
        return np.asarray(numbers, dtype=np.float32)
    except ValueError:
        raise ConfigError(f"{file}, line {number}: a value is not a number") from None


def _table(rows: dict[int, np.ndarray], size: int, dim: int, path: str, seed: int) -> WordVectors:
    found = np.stack(list(rows.values())) if rows else np.zeros((0, dim), np.float32)
    spread = float(found.std()) if found.size else 0.05
    matrix = np.random.default_rng(seed).normal(0.0, spread, (size, dim)).astype(np.float32)
    matrix[0] = 0.0  # padding
    for i, vector in rows.items():
        matrix[i] = vector
    words = max(0, size - SPECIAL_ROWS)
    log.info("word vectors: %d of %d vocabulary words found in %s (%d wide)", len(rows), words, path, dim)
    return WordVectors(matrix=matrix, found=len(rows), words=words, path=path, spread=spread)
