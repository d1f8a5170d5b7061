"""Experiment configuration: frozen pydantic models with defaults, loadable from a small YAML file.

Unknown keys are rejected with the valid ones listed, so a typo never silently falls back to a default. Values
are checked strictly: a boolean must be true or false (not "yes" or 1), an integer must not come from a float or a
boolean; a float accepts an integer, a string an integer (``channels: 3``), a tuple a YAML list. Every error names
the dotted key and the value; a choice lists the valid ones.

    >>> cfg = load_config(None, overrides={"train": {"epochs": 3}})
    >>> cfg.train.epochs, cfg.train.optimizer
    (3, 'adam')
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names the key and the fix."""


# ---------------------------------------------------------------- choices: each spelled once, as a Literal

Optimizer = Literal["adam", "adamw", "sgd", "momentum", "nesterov", "rmsprop", "adagrad"]
LrSchedule = Literal["constant", "step", "exponential", "cosine", "cosine_restarts", "one_cycle"]
EarlyStoppingMode = Literal["auto", "min", "max"]
ClassWeights = Literal["auto", "balanced", "none"]
ImageCache = Literal["none", "memory", "disk"]
LabelIssues = Literal["report", "exclude", "off"]
MixedPrecision = Literal["auto", "on", "off"]
Distribute = Literal["auto", "mirrored", "none"]
ImageArchitecture = Literal[
    "cnn", "resnet", "separable", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_v2_b0"
]
# Keras Applications backbones (training.models.backbones), each with its native input side: the default input size.
BACKBONE_SIDES = {"mobilenet_v3_small": 224, "mobilenet_v3_large": 224, "efficientnet_v2_b0": 224}
TextArchitecture = Literal["cnn", "kim", "bigru", "transformer", "ngram", "hybrid"]
Channels = Literal["auto", "1", "3"]
WideMode = Literal["blend", "joint"]
VectorsMode = Literal["static", "fine_tune"]
WORDS_ONLY_TABLES = ("cnn", "kim", "bigru", "transformer")  # text families whose embedding holds words alone
LinearModel = Literal["auto", "svm", "nb_svm", "svm_nb", "ensemble", "select"]
# fp32 is always made: it is the reference every other variant is measured against.
CompressionVariant = Literal["int8", "pruned", "pruned_int8", "qat", "pruned_qat", "fp16"]
# Variants that fine-tune a copy of the trained model (tfmot pruning, QAT), where the others transform its graph.
RETRAINED_VARIANTS: tuple[CompressionVariant, ...] = ("pruned", "pruned_int8", "qat", "pruned_qat")
SelectionObjective = Literal["balanced", "smallest", "fastest"]
CalibrationName = Literal["minmax", "entropy", "percentile"]
ServingDevice = Literal["cpu", "cuda"]
LatencyBatch = Literal[1, 32]

OPTIMIZERS: tuple[Optimizer, ...] = typing.get_args(Optimizer)
LR_SCHEDULES: tuple[LrSchedule, ...] = typing.get_args(LrSchedule)
EARLY_STOPPING_MODES: tuple[EarlyStoppingMode, ...] = typing.get_args(EarlyStoppingMode)
CLASS_WEIGHTS: tuple[ClassWeights, ...] = typing.get_args(ClassWeights)
IMAGE_CACHES: tuple[ImageCache, ...] = typing.get_args(ImageCache)
IMAGE_ARCHITECTURES: tuple[ImageArchitecture, ...] = typing.get_args(ImageArchitecture)
TEXT_ARCHITECTURES: tuple[TextArchitecture, ...] = typing.get_args(TextArchitecture)
WIDE_MODES: tuple[WideMode, ...] = typing.get_args(WideMode)
LINEAR_MODELS: tuple[LinearModel, ...] = typing.get_args(LinearModel)
COMPRESSION_VARIANTS: tuple[CompressionVariant, ...] = typing.get_args(CompressionVariant)
SELECTION_OBJECTIVES: tuple[SelectionObjective, ...] = typing.get_args(SelectionObjective)
CALIBRATION_METHODS: tuple[CalibrationName, ...] = typing.get_args(CalibrationName)
SERVING_DEVICES: tuple[ServingDevice, ...] = typing.get_args(ServingDevice)


# ---------------------------------------------------------------- value types: how strictly YAML values are read


def _int_as_text(value: Any) -> Any:
    """YAML reads ``channels: 3`` or ``model_name: 2024`` as an int; a string field takes it (never a bool)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _list_as_tuple(value: Any) -> Any:
    """YAML has lists; tuple fields take those (and tuples), not sets, mappings or strings."""
    return tuple(value) if isinstance(value, list) else value


def _exact_int(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


T = TypeVar("T")

Float = Annotated[float, Strict()]  # an int is taken (and made a float); a bool or a string is not
Text = Annotated[str, Strict(), BeforeValidator(_int_as_text)]
Items = Annotated[tuple[T, ...], BeforeValidator(_list_as_tuple), Strict()]
Fraction = Annotated[float, Strict(), Field(ge=0, lt=1)]  # [0, 1)


class _Config(BaseModel):
    """A frozen section of the configuration: unknown keys are errors, values are set once."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- sections


class DataConfig(_Config):
    val_fraction: Float = Field(0.15, gt=0, lt=1)
    test_fraction: Float = Field(0.15, gt=0, lt=1)
    seed: StrictInt = 42
    min_examples_per_class: StrictInt = Field(5, ge=3, description="one each for train, validation and test")
    # Images whose perceptual hashes differ in at most this many of 64 bits are near duplicates
    # (re-encoded, resized, grey vs RGB). -1 turns the near-duplicate search off.
    image_hash_distance: StrictInt = 4
    # ...and whose 4x4 colour thumbnails differ by at most this much per channel (0-255): the hash alone
    # ignores colour, so differently coloured images of one shape are not duplicates.
    image_colour_tolerance: StrictInt = 32
    # Files named <recording>_<frame> (video frames, bursts, GTSRB's tracks), at least 5 recordings in every
    # class: the frames of one recording stay in one split (training.data.split.with_recordings), so validation
    # and the internal test split score recordings training never saw.
    group_recordings: StrictBool = True
    # Resized uint8 images for training: decoded on the fly each epoch ("none"), kept after the first
    # epoch in memory ("memory", small sets) or in files under cache_dir ("disk", bounded memory).
    image_cache: ImageCache = "none"
    cache_dir: Text | None = None
    shuffle_buffer: StrictInt = 8192
    # The label audit of training + validation (training.data.label_audit): "report" lists suspects in
    # label_issues.csv and the data report; "exclude" also leaves them out of fitting; "off" skips it.
    label_issues: LabelIssues = "report"

    @model_validator(mode="after")
    def _disk_cache_has_a_directory(self) -> Self:
        if self.image_cache == "disk" and not self.cache_dir:
            raise ValueError("data.image_cache: disk needs data.cache_dir, a directory for the cache files")
        return self


class AugmentConfig(_Config):
    """Augmentation of the training split only. Image factors as in Keras preprocessing layers."""

    enabled: StrictBool = True
    rotation: Float = 0.05
    zoom: Float = 0.1
    translation: Float = 0.1
    contrast: Float = 0.1
    brightness: Float = 0.0
    # Off by default: flipping breaks digits, letters and other text-like images.
    horizontal_flip: StrictBool = False
    vertical_flip: StrictBool = False
    # Mix pairs of training images and their labels (Beta(alpha, alpha) weights); 0 is off.
    mixup_alpha: Float = Field(0.0, ge=0)
    cutmix_alpha: Float = Field(0.0, ge=0)
    # Texts: drop each token with this probability / swap each token with its neighbour with this probability.
    token_dropout: Float = Field(0.0, ge=0, lt=1)
    random_swap: Float = Field(0.0, ge=0, le=1)


class ImageModelConfig(_Config):
    architecture: ImageArchitecture = "cnn"
    # Input size; None follows the data: the median image side, at most max_size (no upscaling of
    # small images such as 8x8 or 28x28 unless height/width are set).
    height: StrictInt | None = None
    width: StrictInt | None = None
    max_size: StrictInt = 64
    # "auto" (grey unless the data has colour), "1" or "3"
    channels: Annotated[Channels, BeforeValidator(_int_as_text)] = "auto"
    filters: Items[StrictInt] = (32, 64)
    dense_units: StrictInt = 128
    # 0.5 measured best on the sample digits (0.992 vs 0.984 at 0.3) and equal on notMNIST: small image
    # sets overfit the dense head first.
    dropout: Float = 0.5
    # Batch normalisation after every convolution of the cnn family (resnet and separable always have it). Off:
    # added to the image training recipe it lowered the mean of validation and internal test accuracy over the
    # sample digits, notMNIST and GTSRB (not run on flowers5; docs/BENCHMARKS.md, "Image training recipe").
    batch_norm: StrictBool = False
    # Each image standardised by its own mean and spread before a from-scratch network reads it
    # (training.models.layers.PerImageStandardize), so lighting and contrast need not be learnt. On: it raised
    # validation / internal test accuracy on the sample digits (0.978 / 0.966 -> 0.989 / 0.986), GTSRB (0.446 /
    # 0.349 -> 0.532 / 0.542) and flowers5 (0.626 / 0.658 -> 0.660 / 0.689) and left notMNIST level (0.933 /
    # 0.939 -> 0.934 / 0.936) (docs/BENCHMARKS.md, "Image training recipe"). The kernel model reads raw pixels.
    standardize: StrictBool = True
    # An RBF kernel model on the pixels (training.models.kernel: the RBF SVM family, which beats small networks
    # on small grey images) is fitted beside a from-scratch network, and validation decides what ships: the
    # network, the kernel model alone, or both blended. Tried only while an image has at most kernel_max_values
    # pixel values (H*W*C; 1,024: 32x32 grey) and the training split has at most kernel_max_items images. Distances
    # between raw pixels suit small aligned grey pictures (digits, letters, clothing); on colour photos the RBF
    # SVM peer trails small networks (issue 17's table), and the landmarks, stored in the graph, would weigh
    # 12 MB at 1,000 x 32x32x3.
    kernel: StrictBool = True
    kernel_landmarks: StrictInt = Field(1000, ge=2)
    kernel_max_values: StrictInt = Field(1024, ge=1)
    kernel_max_items: StrictInt = Field(20000, ge=1)
    # Backbone families only: where their weights come from. imagenet: Keras' own download and cache
    # ($KERAS_HOME/models, default ~/.keras/models; KILN_OFFLINE=1 never downloads); a path: a weights file (an
    # air-gapped cluster's copy, e.g. on the data volume); none: trained from scratch in one phase. With weights,
    # training runs in two phases: the head on the frozen backbone (train.epochs, early stopping), then the top
    # fine_tune_fraction of the backbone's layers (batch normalisation stays frozen) for up to fine_tune_epochs at
    # fine_tune_lr_factor times the learning rate.
    pretrained: str = "imagenet"
    fine_tune_epochs: StrictInt = Field(10, ge=0)
    fine_tune_fraction: Float = Field(0.3, ge=0.0, le=1.0)
    fine_tune_lr_factor: Float = Field(0.1, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _backbones_read_colour(self) -> Self:
        if self.architecture in BACKBONE_SIDES and self.channels == "1":
            raise ValueError(
                f"image_model.architecture {self.architecture} reads colour images: set image_model.channels to "
                "auto or 3 (grey images are given three equal channels)"
            )
        sides = [side for side in (self.height, self.width) if side is not None]
        if self.architecture in BACKBONE_SIDES and sides and min(sides) < 32:
            raise ValueError(
                f"image_model.architecture {self.architecture} needs an input of at least 32x32 (height, width "
                f"{self.height}, {self.width}); leave them unset for its native {BACKBONE_SIDES[self.architecture]}"
            )
        return self

    @property
    def backbone(self) -> bool:
        return self.architecture in BACKBONE_SIDES

    @property
    def transfers(self) -> bool:
        """A backbone that starts from trained weights: trained in two phases."""
        return self.backbone and self.pretrained != "none"


class TextModelConfig(_Config):
    # hybrid measured best of the families on MR, CR and SST-2 (docs/BENCHMARKS.md); cnn is 6x faster.
    architecture: TextArchitecture = "hybrid"
    max_tokens: StrictInt = 20000
    min_count: StrictInt = 1
    # Tokens per text; None follows the data: the length_percentile of training token counts,
    # clipped to [min_length, max_length_limit], so long documents are read past their first sentence.
    max_length: StrictInt | None = None
    length_percentile: Float = Field(95.0, gt=0, le=100)
    min_length: StrictInt = Field(16, ge=1)
    max_length_limit: StrictInt = 512
    # Hashed word-bigram features next to the words; None: for the ngram and hybrid families, which read
    # them, twice the training bigrams (1,024 to 65,536 buckets), else 0 (words only). Buckets no training item
    # reaches are zero in the shipped table, unless weight decay moved them (models.text.unreached_rows_zeroed).
    ngram_buckets: StrictInt | None = None
    # Hashed character 2-5-grams of each word for the linear half (text_model.wide); it uses them only when
    # they score better on validation. char_buckets None: twice the training set's distinct n-grams, a power
    # of two from 4,096 to 262,144; char_length None: the length_percentile of the training texts' n-gram
    # counts, at most max_char_length. Measured with scikit-learn on our splits, word + char TF-IDF beats
    # words alone by 1.0-1.7 points on CR, MPQA, SUBJ and AG News.
    char_ngrams: StrictBool = True
    char_buckets: StrictInt | None = None
    char_length: StrictInt | None = None
    max_char_length: StrictInt = 1024
    # The most weights the wide half's table may hold (input ids x 2 linear members x classes, the widest linear
    # half, whichever ships): hashed bigram and character buckets that the data sized (left unset above) are
    # halved, the larger first, until it fits, down to their floors (1,024 and 4,096). Among the development sets
    # it binds on CLINC150 (151 classes: a 41-million-weight table in a 185 MB model whose export peaked at
    # 4.9 GiB) and OHSUMED (23 classes, 262,144 character buckets halved twice; its linear SVM scores the same on
    # validation either way). On Kiln's split of CLINC150's train file (text recipe benchmark) the model that would
    # ship scores 0.9454 / 0.9474 (validation / internal test) within the budget against 0.9458 / 0.9481 without,
    # trains in 38 s instead of 102 and has 7.5 million parameters, not 46. None: no bound.
    max_wide_weights: StrictInt | None = Field(8_000_000, ge=1)
    # The linear half reads the whole document: each text's most frequent distinct words, bigrams and character
    # n-grams with their counts (sublinear TF-IDF, as scikit-learn's TfidfVectorizer(sublinear_tf=True)), after
    # the network's windows, which then hold no character n-grams. None: room for the length_percentile of the
    # training texts' distinct terms, from 64 to max_bag_length; 0: the linear half reads the windows only (the
    # first max_length words and their n-grams), as before.
    bag_length: StrictInt | None = Field(None, ge=0)
    max_bag_length: StrictInt = Field(2048, ge=1)
    # The bag's bigrams in buckets of their own, which only the linear half reads (the network's table keeps
    # ngram_buckets). None: for the families that read bigrams, room for twice the training bigrams (a power of
    # two up to 262,144) where that is more than the network's buckets (the wide-table budget halves them first,
    # back to the network's ids once no larger), else none: the bag reuses the network's bigram ids (a
    # words-only family's bag then has no bigrams). 0: always reuse them; a number: that many, for any family.
    bag_bigram_buckets: StrictInt | None = Field(None, ge=0)
    embedding_dim: StrictInt = 64
    filters: StrictInt = 128
    kernel_size: StrictInt = 3  # cnn
    kernel_sizes: Items[StrictInt] = (3, 4, 5)  # kim
    rnn_units: StrictInt = 64  # bigru
    heads: StrictInt = 2  # transformer
    layers: StrictInt = 1  # transformer
    dense_units: StrictInt = 64
    dropout: Float = 0.3
    # A linear model over the bag of words and bigrams whose logits join the network's (wide & deep). It is
    # fitted in closed form before training (training.models.linear): a linear SVM or logistic regression on the
    # TF-IDF bag (with the character n-grams when char_ngrams) and multinomial naive Bayes on the counts.
    wide: StrictBool = True
    # auto: a linear SVM (LinearSVC, C=1) on the TF-IDF bag, alone or in an ensemble with naive Bayes, whichever is
    # more accurate in 5-fold cross-validation over training + validation (a run records the one it chose: svm or
    # svm_nb). svm: the SVM alone. nb_svm: the SVM on the bag whose per-term weights are the IDF times the naive
    # Bayes log-count ratio (NBSVM, Wang & Manning 2012; with more than two classes, the SVM); not in auto: on the
    # 5 two-class development sets the model that would ship averaged 0.8400 / 0.8249 (validation / internal test)
    # with it against auto's 0.8439 / 0.8352 (text training recipe). svm_nb: the SVM and naive Bayes,
    # temperature-weighted. ensemble: logistic
    # regression and naive Bayes, each temperature-scaled on validation, their logits added. select: the best
    # single candidate on validation (also logistic regression on words alone). Chosen on Kiln's own validation
    # splits of the train files of 8 development sets (CR, MPQA, SST-2, MR, SUBJ, SNIPS, OHSUMED, CLINC150): auto
    # beat ensemble on 6 (OHSUMED by 4.2 points, MPQA by 1.4) and trailed it on 2 (SST-2 by 0.42, CLINC150 by 0.03).
    linear_model: LinearModel = "auto"
    # joint: the network trains on top of the warm-started linear half (wide_trainable lets it fine-tune it).
    # blend: the network trains alone, then both halves' logits are added with weights chosen on validation
    # (an ensemble; its validation curves are the network's alone, so tuning cannot compare it fairly). Measured
    # on SUBJ, MPQA, CR and the sample texts (test split), joint won 3 of 4: 0.9108/0.8195/0.8100/0.9554 vs
    # 0.9147/0.8146/0.7997/0.9375.
    wide_mode: WideMode = "joint"
    # Off: the joint model's training leaves the closed-form per-term weights as fitted. Fine-tuning them (on) gave
    # the model that ships the same validation accuracy on 7 of 9 text sets and 0.0008 less on SUBJ and SST-2
    # (means 0.8586 vs 0.8587; internal test 0.8575 vs 0.8564, SUBJ's network being kept by that margin), while
    # Adam rewrote every row of the table at every step: OHSUMED trained 179 s instead of 72, and CLINC150's
    # 151-class table (41 million weights) took a minute per epoch (docs/BENCHMARKS.md, "Text training recipe").
    wide_trainable: StrictBool = False
    # joint: keep the trained network only when the model beats the linear half alone on validation; else
    # the linear model ships alone (text_linear: no network layer in its graph). On AG News joint training took
    # validation accuracy from 0.8776 (linear) to 0.8614: a network that overfits must not ship.
    require_network_gain: StrictBool = True
    # Pretrained word vectors (a GloVe or fastText text file: a word, then its numbers, per line; .gz is read too)
    # initialise the network's word embedding, whose width becomes the file's; vocabulary words missing from the
    # file start random. fine_tune trains them further; static freezes the table, so it needs a family whose table
    # holds words alone (hybrid and ngram share it with hashed bigrams). report.json training.pretrained_vectors
    # says the coverage. The linear half does not read them.
    pretrained_vectors: str | None = None
    vectors_mode: VectorsMode = "fine_tune"

    @model_validator(mode="after")
    def _static_vectors_need_a_words_only_table(self) -> Self:
        if self.pretrained_vectors and self.vectors_mode == "static" and self.architecture not in WORDS_ONLY_TABLES:
            raise ValueError(
                f"text_model.vectors_mode static freezes the embedding, which the {self.architecture} family shares "
                f"with hashed bigrams: use vectors_mode fine_tune, or architecture {' / '.join(WORDS_ONLY_TABLES)}"
            )
        return self

    @model_validator(mode="after")
    def _heads_divide_the_embedding(self) -> Self:
        if self.embedding_dim % max(1, self.heads):
            raise ValueError(
                f"text_model.embedding_dim ({self.embedding_dim}) must be a multiple of text_model.heads ({self.heads})"
            )
        return self

    @model_validator(mode="after")
    def _length_bounds_in_order(self) -> Self:
        if self.min_length > self.max_length_limit:
            raise ValueError(
                f"text_model.min_length ({self.min_length}) must be at most "
                f"text_model.max_length_limit ({self.max_length_limit})"
            )
        return self

    def with_linear_choice(self, members: int) -> TextModelConfig:
        """auto resolved by the fitted linear half: svm (one model) or svm_nb (two); other choices stay."""
        if self.linear_model != "auto":
            return self
        return self.model_copy(update={"linear_model": "svm_nb" if members == 2 else "svm"})

    @property
    def linear_members(self) -> int:
        """How many linear models the wide half adds up (models.WeightedBag's bags)."""
        return 2 if self.linear_model in ("ensemble", "svm_nb") else 1

    def buckets(self) -> int:
        """``ngram_buckets``, or its ceiling: 65,536 for the families that read bigrams, else 0."""
        if self.ngram_buckets is not None:
            return self.ngram_buckets
        return 65536 if self.architecture in ("ngram", "hybrid") else 0


class TrainConfig(_Config):
    epochs: StrictInt = Field(40, ge=1)
    batch_size: StrictInt = Field(32, ge=1)
    optimizer: Optimizer = "adam"
    # Settings that are None here take the task's default (TASK_TRAIN_DEFAULTS, below): learning_rate,
    # lr_schedule, warmup_epochs, label_smoothing, early_stopping_monitor and early_stopping_patience.
    learning_rate: Float | None = Field(None, gt=0)
    # Decoupled weight decay for any optimizer (adamw uses 1e-4 when this is 0); gradient clipping.
    weight_decay: Float = Field(0.0, ge=0)
    clip_norm: Float | None = None
    clip_value: Float | None = None
    # Learning-rate schedule over the whole run: constant, step (x decay_rate every decay_every_epochs),
    # exponential (x decay_rate per epoch), cosine (with warmup_epochs of linear warmup), cosine_restarts
    # (first cycle restart_epochs long, each next one twice as long), one_cycle (warm up over the first 30%
    # to learning_rate, then anneal).
    lr_schedule: LrSchedule | None = None  # None: the task's default (TASK_TRAIN_DEFAULTS)
    warmup_epochs: Float | None = Field(None, ge=0)
    decay_every_epochs: StrictInt = Field(10, ge=1)
    decay_rate: Float = 0.5
    restart_epochs: StrictInt = Field(10, ge=1)
    # ReduceLROnPlateau on the early-stopping monitor; applies with the constant schedule only.
    reduce_lr_on_plateau: StrictBool = True
    reduce_lr_patience: StrictInt = 3
    reduce_lr_factor: Float = 0.5
    min_learning_rate: Float = 1e-5
    label_smoothing: Float | None = Field(None, ge=0, lt=1)
    l1: Float = Field(0.0, ge=0)
    l2: Float = Field(0.0, ge=0)
    early_stopping_monitor: Text | None = None
    early_stopping_mode: EarlyStoppingMode = "auto"
    early_stopping_patience: StrictInt | None = None
    early_stopping_min_delta: Float = 0.0
    # Hardware: mixed_float16 (auto = on GPU only), XLA compilation, and the distribution strategy
    # (auto = MirroredStrategy when more than one GPU is visible; mirrored; none).
    mixed_precision: MixedPrecision = "auto"
    jit_compile: StrictBool = False
    distribute: Distribute = "auto"
    seed: StrictInt = 42
    # "auto": balanced class weights when the largest class is over imbalance_ratio times the smallest.
    class_weights: ClassWeights = "auto"
    imbalance_ratio: Float = 3.0
    # After validation chose the recipe (epochs by early stopping, the linear half's models and C/alpha, whether
    # the network is kept), train it again on training + validation for the chosen epochs, with the learning
    # rates the selection run used: the shipped model learns from ~85% of the data instead of ~70%. The test
    # split is never part of either fit. false ships the model fitted on the training split only.
    refit: StrictBool = True


class CompressConfig(_Config):
    # fp32 ONNX must reproduce Keras probabilities to this max absolute difference.
    parity_tolerance: Float = 1e-4
    # A variant may be served only within this validation accuracy drop from fp32 (1 point), and top-1
    # agreement with fp32 of at least 1 minus it; on a split of under 100 items, where one item is more than
    # a point, one item's change is allowed instead (compression.compress.allowed_drop). Among those, the
    # objective picks: smallest (gzip bytes), fastest (p50 at latency_batch 1 or 32), or balanced (the
    # smallest that is not slower than fp32 at batch 1 or 32, within latency_slack of timing noise).
    max_accuracy_drop: Float = 0.01
    objective: SelectionObjective = "balanced"
    # Whether the fine-tuned variants (RETRAINED_VARIANTS) may be served when the shipped model learnt from the
    # validation items (train.refit): their agreement with fp32 on items both have learnt says little about new
    # ones. On Kiln's internal test splits of 7 development sets, which no model saw, the 14 fine-tuned variants
    # that validation had passed (99% agreement or more) agreed with fp32 on 84.4-99.8% of the items, and their
    # accuracy moved by -5.3 to +1.9 points (docs/BENCHMARKS.md, compression variants): not a compressed copy of
    # the model the run chose. Without a refit, validation is unseen and they compete whatever this says.
    serve_retrained: StrictBool = False
    latency_batch: Annotated[LatencyBatch, BeforeValidator(_exact_int)] = 1
    latency_slack: Float = Field(0.05, ge=0)
    # ...plus this much absolute (ms): sub-0.1 ms timings jitter by more than 5% between runs, and a served request
    # costs over 1 ms in HTTP and decoding alone (docs/BENCHMARKS.md, serving), so 0.1 ms more in the model is no
    # reason to ship a 4x larger file (measured on CR: int8 0.171 ms vs fp32 0.152 ms at batch 1, 4.4 vs 17.5 MB).
    latency_floor_ms: Float = Field(0.1, ge=0)
    # The same at batch 32: a request of 32 texts costs about 6.5 ms through `kiln serve` (docs/BENCHMARKS.md,
    # serving), so 0.5 ms more in the model is under a tenth of it. INT8 text models read 8-bit rows and
    # dequantize each one they gather: 0.2-0.3 ms more per 32 texts than fp32 for a quarter of the bytes.
    latency_floor_b32_ms: Float = Field(0.5, ge=0)
    # Where the served model runs: fp16 is only eligible for cuda, and the timings run there when it exists.
    serving_device: ServingDevice = "cpu"
    # ONNX Runtime intra-op threads for the timings; 0: all cores (recorded per variant)
    threads: StrictInt = Field(0, ge=0)
    calibration_samples: StrictInt = 256
    # Activation ranges for static INT8: minmax, entropy (KL) or percentile (99.999th).
    calibration: CalibrationName = "minmax"
    # Text models: INT8 methods (static QDQ, dynamic, 8-bit embedding tables alone) within this accuracy of the
    # best count as equal; of those not slower than fp32, the most faithful to the quantized graph is kept.
    int8_equal_accuracy: Float = 0.002
    latency_runs: StrictInt = 50
    # Variants made besides fp32: int8 (ORT post-training), pruned (tfmot magnitude pruning, fine-tuned),
    # pruned_int8, qat (tfmot quantization-aware training), pruned_qat (prune-preserving QAT), fp16 (GPU).
    variants: Items[CompressionVariant] = COMPRESSION_VARIANTS
    sparsity: Fraction = 0.75
    # layer name -> target sparsity
    sparsity_overrides: dict[Annotated[str, BeforeValidator(str)], Fraction] = Field(default_factory=dict)
    # None: 3 for images, 2 for texts (compression.prune.prune_epochs_for)
    prune_epochs: StrictInt | None = Field(None, ge=1)
    # fine-tuning learning rate (pruning and QAT), relative to training's
    prune_learning_rate_factor: Float = Field(0.5, gt=0)
    qat_epochs: StrictInt = Field(2, ge=1)
    # QAT only where tfmot's supported layers hold at least this share of the weights (not text models,
    # whose embeddings and Conv1D tfmot cannot quantize).
    qat_min_coverage: Float = Field(0.5, ge=0, le=1)


class GateConfig(_Config):
    # New version must be no worse than the baseline by more than this, on accuracy and macro-F1.
    metric_tolerance: Float = 0.01
    # The baseline, scored on the new run's test items: a pinned version (e.g. "v0003"), or (None) the best of the
    # last baseline_window production versions. Against production alone, each retrain could lose the tolerance
    # again and ten nightly runs could lose ten times it with every gate green; against the best recent one, the
    # tolerance applies once.
    baseline: Text | None = Field(None, pattern=r"^v\d{4,}$")
    baseline_window: StrictInt = Field(10, ge=1)
    max_model_bytes: StrictInt | None = None
    max_latency_ms: Float | None = None


class RunConfig(_Config):
    model_name: Text | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    image_model: ImageModelConfig = Field(default_factory=ImageModelConfig)
    text_model: TextModelConfig = Field(default_factory=TextModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    compress: CompressConfig = Field(default_factory=CompressConfig)
    gate: GateConfig = Field(default_factory=GateConfig)

    # A rule of the run rather than of DataConfig: splitting works for any fractions below 1 (and its tests use
    # larger ones); a run keeps at least a tenth of the data for training.
    @model_validator(mode="after")
    def _training_keeps_a_tenth(self) -> Self:
        d = self.data
        if d.val_fraction + d.test_fraction >= 0.9:
            raise ValueError(
                f"data.val_fraction and data.test_fraction must sum below 0.9, got {d.val_fraction} + {d.test_fraction}"
            )
        return self

    def with_overrides(self, overrides: dict[str, Any]) -> RunConfig:
        """This configuration with ``overrides`` (nested sections, as load_config takes them) laid over it and
        the result checked as a whole; a bad key or value is a ConfigError.

        >>> RunConfig().with_overrides({"train": {"epochs": 3}}).train.epochs
        3
        """
        return _validated(merge_config(config_to_dict(self), overrides))


# What a train setting left unset (None) means, per task. Texts: 3e-4 suits the wide & deep model's warm-started
# linear half (measured on MR, SUBJ, SST-2, MPQA and AG News). Images: of the recipes run on Kiln's own splits
# of all four of the sample digits, notMNIST, GTSRB (recordings kept whole) and flowers5, the one with the highest
# mean validation accuracy (0.746, the earlier constant-rate, val_loss recipe 0.650; on the internal test splits 0.728
# and 0.648; docs/BENCHMARKS.md, "Image training recipe"): a cosine schedule after a short warm-up, label
# smoothing, and early stopping that follows validation accuracy with room for its noise (the loss of a small,
# honest validation split rises while its accuracy still climbs). Label smoothing stays (measured 2026-12-07, same
# table): without it mean validation accuracy was 0.780 against 0.774, within what a rerun of the default alone
# moves (0.779 -> 0.774), while the calibrated ECE rose on every internal test split (mean 0.035 -> 0.050).
TASK_TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "image": {
        "learning_rate": 1e-3,
        "lr_schedule": "cosine",
        "warmup_epochs": lambda t: t.epochs / 20,  # 2 of the default 40; a 3-epoch run warms up briefly
        "label_smoothing": 0.1,
        "early_stopping_monitor": "val_accuracy",
        "early_stopping_patience": 10,
    },
    "text": {
        "learning_rate": 3e-4,
        "lr_schedule": "constant",
        "warmup_epochs": 0.0,
        "label_smoothing": 0.0,
        "early_stopping_monitor": "val_loss",
        "early_stopping_patience": 6,
    },
}


def train_config_for(cfg: RunConfig, task: str) -> TrainConfig:
    """``cfg.train`` with every setting left unset (None) filled in with the task's default (a value, or a
    function of the train settings)."""
    t = cfg.train
    unset = {key: value for key, value in TASK_TRAIN_DEFAULTS[task].items() if getattr(t, key) is None}
    return t.model_copy(update={k: v(t) if callable(v) else v for k, v in unset.items()}) if unset else t


def merge_config(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Nested dictionaries of config values, ``extra`` winning; neither is changed."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: Path | str | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Defaults, then the YAML file at ``path`` (if any), then ``overrides`` (CLI flags)."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping of sections, got {type(loaded).__name__}")
        data = loaded
    return _validated(merge_config(data, overrides or {}))


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Plain nested dicts (tuples stay tuples), as load_config and RunConfig.with_overrides read them back."""
    return cfg.model_dump()


# ---------------------------------------------------------------- pydantic's errors as ConfigError messages


def _validated(data: dict[str, Any]) -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, RunConfig) from None


def _config_error(exc: ValidationError, root: type[BaseModel]) -> ConfigError:
    """One ConfigError for all of ``exc``'s errors (validating ``root``), a line each: unknown keys first,
    grouped per section with the valid keys listed, then each bad value by its dotted key."""
    unknown: dict[tuple[int | str, ...], list[str]] = {}
    lines: list[str] = []
    for err in exc.errors():
        if err["type"] == "extra_forbidden":
            unknown.setdefault(tuple(err["loc"][:-1]), []).append(str(err["loc"][-1]))
        else:
            lines.append(_message(err, root))
    for section, keys in reversed(unknown.items()):
        model, _ = _type_at(root, section)
        valid = ", ".join(model.model_fields) if _is_model(model) else "?"
        lines.insert(0, f"{_key(section)}: unknown key(s) {', '.join(sorted(keys))}; valid keys: {valid}")
    return ConfigError("\n".join(lines))


_EXPECTED = {"bool": "true or false", "int": "int", "float": "float", "string": "str", "tuple": "a list"}


def _message(err: ErrorDetails, root: type[BaseModel]) -> str:
    loc, value, kind = tuple(err["loc"]), err["input"], err["type"]
    if kind == "value_error":  # a model_validator's rule: its message names the keys itself
        return str((err.get("ctx") or {}).get("error", err["msg"]))
    where = _key(loc)
    annotation, metadata = _type_at(root, loc)
    if kind == "literal_error":
        choices = ", ".join(str(c) for c in typing.get_args(annotation))
        return f"{_key(p for p in loc if isinstance(p, str))} {value!r} is unknown; choose one of: {choices}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        why = next((m.description for m in metadata if isinstance(m, FieldInfo) and m.description), None)
        return f"{where} must be {_bounds(metadata)}, got {value!r}" + (f" ({why})" if why else "")
    if kind in ("model_type", "model_attributes_type"):
        return f"{where}: expected a mapping, got {type(value).__name__}"
    if kind == "dict_type":
        return f"{where}: expected a mapping, got {value!r}"
    expected = _EXPECTED.get(kind.split("_")[0])
    if expected:
        return f"{where}: expected {expected}, got {value!r}"
    return f"{where}: {err['msg']}, got {value!r}"


def _key(loc: typing.Iterable[int | str]) -> str:
    """("compress", "variants", 0) -> compress.variants[0]; () -> config (the whole file)."""
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else f".{part}" if key else part
    return key or "config"


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _type_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[Any, list[Any]]:
    """The type of the value at ``loc`` below ``root`` (Annotated and Optional unwrapped) and its
    constraint metadata (pydantic's FieldInfo and annotated_types' Ge, Lt, ...)."""
    annotation: Any = root
    metadata: list[Any] = []
    for part in loc:
        annotation, metadata = _unwrapped(annotation, metadata)
        if _is_model(annotation) and isinstance(part, str) and part in annotation.model_fields:
            field = annotation.model_fields[part]
            annotation, metadata = field.annotation, [field, *field.metadata]
        elif typing.get_origin(annotation) in (tuple, dict):
            annotation, metadata = typing.get_args(annotation)[0 if typing.get_origin(annotation) is tuple else 1], []
        else:
            return None, []
    return _unwrapped(annotation, metadata)


def _unwrapped(annotation: Any, metadata: list[Any]) -> tuple[Any, list[Any]]:
    metadata = list(metadata)
    while True:
        if typing.get_origin(annotation) is Annotated:
            annotation, *more = typing.get_args(annotation)
            for extra in more:
                metadata += [extra, *extra.metadata] if isinstance(extra, FieldInfo) else [extra]
        elif typing.get_origin(annotation) in (typing.Union, types.UnionType):
            inner = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(inner) != 1:
                return annotation, metadata
            annotation = inner[0]
        else:
            return annotation, metadata


def _bounds(metadata: list[Any]) -> str:
    """[Ge(0), Lt(1)] -> "in [0, 1)"; [Ge(1)] -> ">= 1"."""
    low = next(((b, "[") for m in metadata if (b := getattr(m, "ge", None)) is not None), None)
    low = low or next(((b, "(") for m in metadata if (b := getattr(m, "gt", None)) is not None), None)
    high = next(((b, "]") for m in metadata if (b := getattr(m, "le", None)) is not None), None)
    high = high or next(((b, ")") for m in metadata if (b := getattr(m, "lt", None)) is not None), None)
    if low and high:
        return f"in {low[1]}{low[0]:g}, {high[0]:g}{high[1]}"
    if low:
        return f"{'>=' if low[1] == '[' else '>'} {low[0]:g}"
    if high:
        return f"{'<=' if high[1] == ']' else '<'} {high[0]:g}"
    return "in range"
