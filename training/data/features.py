"""Turn a Dataset into model input arrays with the shared preprocessing (serving.preprocess).

>>> spec = make_spec(dataset, cfg)  # doctest: +SKIP
>>> x, y = to_arrays(dataset, spec)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import numpy as np

from serving.preprocess import (
    ImageSpec,
    Spec,
    TextSpec,
    bag_terms,
    build_vocabulary,
    preprocess_image_bytes,
    token_index,
    tokenize,
    word_char_hashes,
)
from training.config import BACKBONE_SIDES, RunConfig, TrainConfig
from training.data.dataset import Dataset
from training.kinds import kind_of

log = logging.getLogger(__name__)


def image_spec(train: Dataset, labels: tuple[str, ...], cfg: RunConfig) -> ImageSpec:
    """An image model's spec, from the training split only: channels (grey unless the data has colour) and side."""
    m = cfg.image_model
    channels = 3 if m.backbone else (3 if train.colour else 1) if m.channels == "auto" else int(m.channels)
    side = BACKBONE_SIDES[m.architecture] if m.backbone else image_side(train, cfg)  # a backbone's native size
    return ImageSpec(labels=labels, height=m.height or side, width=m.width or side, channels=channels)


def text_spec(train: Dataset, labels: tuple[str, ...], cfg: RunConfig) -> TextSpec:
    """A text model's spec, from the training split only (no test leakage): vocabulary, length, hashed n-grams."""
    t = cfg.text_model
    vocabulary = build_vocabulary(train.inputs, t.max_tokens, t.min_count)
    length = text_length(train.inputs, cfg)
    bigrams = distinct_bigrams(train) if t.buckets() and None in (t.ngram_buckets, t.bag_bigram_buckets) else 0
    spec = TextSpec(labels=labels, vocabulary=vocabulary, max_length=length, ngram_buckets=bigram_buckets(bigrams, cfg))
    spec = with_char_ngrams(with_bag_bigrams(spec, bigrams, cfg), train, cfg)
    return with_bag(within_wide_budget(spec, cfg), train, cfg)


def make_spec(train: Dataset, labels: tuple[str, ...], cfg: RunConfig) -> Spec:
    """The preprocessing spec for a new model of the training split's task (its TaskKind decides)."""
    return kind_of(train.task).make_spec(train, labels, cfg)


BIGRAM_FLOOR = 1024  # the fewest hashed-bigram buckets the data may size (when the family reads bigrams)
BAG_BIGRAM_CEILING = 262_144  # the most buckets of the bag's own bigrams (text_model.bag_bigram_buckets)
CHAR_FLOOR, CHAR_CEILING = 4096, 262_144  # the fewest and most hashed character n-gram buckets the data may size


def distinct_bigrams(train: Dataset) -> int:
    """How many distinct word pairs the training texts hold, whole documents."""
    return len({pair for text in train.inputs for pair in pairwise(tokenize(text))})


def bigram_buckets(distinct: int, cfg: RunConfig) -> int:
    """Hashed-bigram buckets: as configured, else (for the families that read bigrams) room for twice the
    training set's ``distinct`` bigrams, a power of two between 1,024 and 65,536, so a small corpus keeps a
    small model."""
    t = cfg.text_model
    ceiling = t.buckets()
    if t.ngram_buckets is not None or not ceiling:
        return ceiling
    return room_for(distinct, BIGRAM_FLOOR, ceiling)


def with_bag_bigrams(spec: TextSpec, distinct: int, cfg: RunConfig) -> TextSpec:
    """``spec`` with the whole-document bag's own bigram buckets (for the linear half) where the network reads
    bigrams and the data wants more room than its table: twice the training set's ``distinct`` bigrams, a power
    of two up to 262,144; else 0 (the bag reuses the network's ids; a words-only network's bag has no bigrams,
    as before: measured on the hybrid family only). In 5-fold cross-validation on the train files of MR, SUBJ and SST-2
    (74,000-98,000 distinct bigrams), TF-IDF 1-2-grams + linear SVM lose 0.4-1.0 points when the bigrams are
    hashed into 65,536 buckets and 0.1-0.3 into 262,144; on CR and SNIPS (27,000-37,000) neither loses. In Kiln's
    default runs on the 4 development sets where it applies (MR, SUBJ, SST-2, AG News), the linear half's
    validation accuracy rose by 0.2-0.7 points (mean +0.44), its best 5-fold score by -0.1 to +1.2 (mean +0.30),
    and the shipped model's internal test accuracy moved by -0.5 to +1.4 (mean +0.29)."""
    t = cfg.text_model
    if not reads_whole_documents(cfg):
        return spec
    if t.bag_bigram_buckets is not None:
        return dataclasses.replace(spec, bag_bigram_buckets=t.bag_bigram_buckets)
    return bag_bigrams_apart(spec, room_for(distinct, BIGRAM_FLOOR, BAG_BIGRAM_CEILING))


def bag_bigrams_apart(spec: TextSpec, buckets: int) -> TextSpec:
    """``spec`` with ``buckets`` of the bag's own bigrams where that is more room than the network's bigram table,
    else with the bag on the network's ids (none: a words-only network)."""
    return dataclasses.replace(spec, bag_bigram_buckets=buckets if 0 < spec.ngram_buckets < buckets else 0)


def room_for(distinct: int, low: int, high: int) -> int:
    """Hash buckets for ``distinct`` training keys: twice as many, a power of two between low and high."""
    return int(min(high, max(low, 2 ** math.ceil(math.log2(2 * distinct + 1)))))


def reads_whole_documents(cfg: RunConfig) -> bool:
    """Whether the linear half reads each text's whole-document bag (text_model.bag_length not 0)."""
    return cfg.text_model.wide and cfg.text_model.bag_length != 0


def with_char_ngrams(spec: TextSpec, train: Dataset, cfg: RunConfig) -> TextSpec:
    """``spec`` with character n-gram ids for the linear half (off without one): buckets for twice the
    training set's distinct n-grams (a power of two, 4,096 to 262,144). With the whole-document bag they are
    counted over every word and live in the bag only; else they fill a window with room for the
    length_percentile of the training texts' n-gram counts over their first max_length words."""
    t = cfg.text_model
    if not (t.wide and t.char_ngrams):
        return spec
    whole = reads_whole_documents(cfg)
    words = [tokenize(text) if whole else tokenize(text)[: spec.max_length] for text in train.inputs]
    grams = {w: word_char_hashes(w, spec.char_min_n, spec.char_max_n) for ws in words for w in ws}
    if t.char_buckets is None:
        distinct = np.unique(np.concatenate(list(grams.values()) or [np.zeros(0, np.uint32)]))
        buckets = room_for(len(distinct), CHAR_FLOOR, CHAR_CEILING)
    else:
        buckets = t.char_buckets
    if whole:
        length = 0
    elif t.char_length is None:
        per_text = [sum(len(grams[w]) for w in ws) for ws in words] or [16]
        length = int(np.clip(np.ceil(np.percentile(per_text, t.length_percentile)), 16, t.max_char_length))
    else:
        length = t.char_length
    if not buckets or not (length or whole):
        return spec
    log.info("character n-grams: %d buckets%s", buckets, "" if whole else f", {length} ids per text")
    return dataclasses.replace(spec, char_buckets=buckets, char_length=length)


WIDEST_LINEAR_MODEL = 2  # linear members (models.WeightedBag's bags) of the widest linear half: SVM + NB
# The hashed bucket counts a budget may halve (text_model fields of the same names), in the order that breaks a tie,
# each with its floor.
BUDGETED_BUCKETS = (("char_buckets", CHAR_FLOOR), ("bag_bigram_buckets", BIGRAM_FLOOR), ("ngram_buckets", BIGRAM_FLOOR))


def within_wide_budget(spec: TextSpec, cfg: RunConfig) -> TextSpec:
    """``spec`` with the hashed buckets the data sized halved, the larger first, until the wide half's table
    (input ids x 2 linear members x classes) holds at most text_model.max_wide_weights: with many classes the
    table, not the data, would set the model's size, its memory in training and export, and its latency.
    Buckets set in the configuration are kept as set."""
    t = cfg.text_model
    if not t.wide or t.max_wide_weights is None:
        return spec
    # two members whatever linear_model says: auto chooses after the spec is made, and the refit's spec (made once
    # the choice is known) must come out of the same rule as the selection's, or the model validation judged
    # would not be the one that ships
    columns = WIDEST_LINEAR_MODEL * len(spec.labels)
    start = spec
    while spec.input_vocabulary * columns > t.max_wide_weights:
        shrinkable = [
            (name, getattr(spec, name))
            for name, floor in BUDGETED_BUCKETS
            if getattr(t, name) is None and getattr(spec, name) > floor
        ]
        if not shrinkable:
            _over_budget(spec, cfg, columns)
            break
        name, buckets = max(shrinkable, key=lambda item: item[1])
        spec = dataclasses.replace(spec, **{name: buckets // 2})
        if t.bag_bigram_buckets is None:
            spec = bag_bigrams_apart(spec, spec.bag_bigram_buckets)  # the rule with_bag_bigrams sized them by
    if spec != start:
        log.info(
            "wide table within %s weights (%d classes): bigram buckets %d -> %d, the bag's own bigram buckets "
            "%d -> %d, character n-gram buckets %d -> %d",
            f"{t.max_wide_weights:,}",
            len(spec.labels),
            start.ngram_buckets,
            spec.ngram_buckets,
            start.bag_bigram_buckets,
            spec.bag_bigram_buckets,
            start.char_buckets,
            spec.char_buckets,
        )
    return spec


def _over_budget(spec: TextSpec, cfg: RunConfig, columns: int) -> None:
    """Say that the wide table stays over its budget, why (each bucket count configured or at its floor) and what
    would shrink it."""
    t = cfg.text_model
    why = ", ".join(
        f"text_model.{name} ({getattr(spec, name)}, {'as configured' if getattr(t, name) is not None else 'its floor'})"
        for name, _ in BUDGETED_BUCKETS
        if getattr(spec, name)
    )
    log.warning(
        "the wide table needs %s weights (%d ids x %d columns), over text_model.max_wide_weights (%s): %s. Lower "
        "text_model.max_tokens or the configured buckets, or raise text_model.max_wide_weights (null: no bound)",
        f"{spec.input_vocabulary * columns:,}",
        spec.input_vocabulary,
        columns,
        f"{t.max_wide_weights:,}",
        why,
    )


def with_bag(spec: TextSpec, train: Dataset, cfg: RunConfig, sample: int = 2000) -> TextSpec:
    """``spec`` with the whole-document bag for the linear half: room for text_model.bag_length distinct terms,
    or (unset) the length_percentile of the distinct terms of up to ``sample`` training texts, 64 to
    max_bag_length."""
    t = cfg.text_model
    if not reads_whole_documents(cfg):
        return spec
    if t.bag_length is not None:
        length = t.bag_length
    else:
        probe, index = dataclasses.replace(spec, bag_length=t.max_bag_length), token_index(spec)
        rng = np.random.default_rng(cfg.train.seed)
        picked = rng.choice(len(train), min(sample, len(train)), replace=False) if len(train) else np.zeros(0, int)
        distinct = [len(bag_terms(tokenize(train.inputs[i]), probe, index)[0]) for i in picked] or [64]
        length = int(np.clip(np.ceil(np.percentile(distinct, t.length_percentile)), 64, t.max_bag_length))
    log.info("whole-document bag: up to %d distinct terms per text", length)
    return dataclasses.replace(spec, bag_length=length)


def image_side(train: Dataset, cfg: RunConfig) -> int:
    """The model's input side when not configured: the median of the training images' shorter sides,
    between 8 and image_model.max_size, so small images are not upscaled and large ones are shrunk."""
    if not train.sizes:
        return min(32, cfg.image_model.max_size)
    median = float(np.median([min(w, h) for w, h in train.sizes]))
    return int(np.clip(round(median), 8, cfg.image_model.max_size))


def token_counts(texts: list[str]) -> np.ndarray:
    return np.array([len(tokenize(t)) for t in texts], dtype=np.int64)


def text_length(texts: list[str], cfg: RunConfig) -> int:
    """Tokens per text for the model: configured, or the length_percentile of the training texts'
    token counts clipped to [min_length, max_length_limit]."""
    t = cfg.text_model
    if t.max_length is not None:
        return t.max_length
    counts = token_counts(texts)
    wanted = int(np.ceil(np.percentile(counts, t.length_percentile))) if len(counts) else t.min_length
    length = int(np.clip(wanted, t.min_length, t.max_length_limit))
    log.info(
        "text length: %d tokens (%gth percentile %d, bounds %d-%d)",
        length,
        t.length_percentile,
        wanted,
        t.min_length,
        t.max_length_limit,
    )
    return length


def encode_labels(labels: list[str], names: tuple[str, ...]) -> np.ndarray:
    """Label strings -> int32 class indices; labels the spec does not know become -1."""
    index = {name: i for i, name in enumerate(names)}
    return np.array([index.get(label, -1) for label in labels], dtype=np.int32)


def to_inputs(dataset: Dataset, spec: Spec) -> np.ndarray:
    """Model input batch for every item of ``dataset``, encoded as the spec's task encodes."""
    return kind_of(spec.kind).encode(dataset, spec)


def encode_images(dataset: Dataset, spec: ImageSpec) -> np.ndarray:
    """Scaled float32 pixels (N, H, W, C) of every image, decoded by the shared preprocessing."""

    def load(path: object) -> np.ndarray:
        with open(str(path), "rb") as fh:
            return preprocess_image_bytes(fh.read(), spec)

    # Pillow releases the GIL while decoding, so threads help on many-core hosts.
    with ThreadPoolExecutor(max_workers=4) as pool:
        arrays = list(pool.map(load, dataset.inputs))
    shape = (0, spec.height, spec.width, spec.channels)
    return np.stack(arrays) if arrays else np.zeros(shape, np.float32)


def to_arrays(dataset: Dataset, spec: Spec) -> tuple[np.ndarray, np.ndarray]:
    return to_inputs(dataset, spec), encode_labels(dataset.labels, spec.labels)


def class_weights(labels: list[str], names: tuple[str, ...], cfg: TrainConfig) -> dict[int, float] | None:
    """Balanced weights (n / (classes * count)) when configured, or by default when the largest class
    is more than ``imbalance_ratio`` times the smallest; None means every example weighs 1."""
    counts = Counter(labels)
    sizes = [counts.get(name, 0) for name in names]
    imbalanced = min(sizes) > 0 and max(sizes) / min(sizes) > cfg.imbalance_ratio
    if cfg.class_weights == "none" or (cfg.class_weights == "auto" and not imbalanced):
        return None
    total = sum(sizes)
    return {i: total / (len(names) * n) for i, n in enumerate(sizes) if n}
