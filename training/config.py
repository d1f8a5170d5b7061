"""Experiment configuration: frozen dataclasses with defaults, loadable from a small YAML file.

Unknown keys are rejected with the valid ones listed, so a typo never silently falls back to a default.

    >>> cfg = load_config(None, overrides={"train": {"epochs": 3}})
    >>> cfg.train.epochs, cfg.train.optimizer
    (3, 'adam')
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

OPTIMIZERS = ("adam", "adamw", "sgd", "momentum", "nesterov", "rmsprop", "adagrad")
LR_SCHEDULES = ("constant", "step", "exponential", "cosine", "cosine_restarts", "one_cycle")
EARLY_STOPPING_MODES = ("auto", "min", "max")


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names the key and the fix."""


CLASS_WEIGHTS = ("auto", "balanced", "none")
IMAGE_CACHES = ("none", "memory", "disk")


@dataclass(frozen=True)
class DataConfig:
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 42
    min_examples_per_class: int = 5
    # Images whose perceptual hashes differ in at most this many of 64 bits are near duplicates
    # (re-encoded, resized, grey vs RGB). -1 turns the near-duplicate search off.
    image_hash_distance: int = 4
    # ...and whose 4x4 colour thumbnails differ by at most this much per channel (0-255): the hash alone
    # ignores colour, so differently coloured images of one shape are not duplicates.
    image_colour_tolerance: int = 32
    # Resized uint8 images for training: decoded on the fly each epoch ("none"), kept after the first
    # epoch in memory ("memory", small sets) or in files under cache_dir ("disk", bounded memory).
    image_cache: str = "none"
    cache_dir: str | None = None
    shuffle_buffer: int = 8192


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation of the training split only. Image factors as in Keras preprocessing layers."""

    enabled: bool = True
    rotation: float = 0.05
    zoom: float = 0.1
    translation: float = 0.1
    contrast: float = 0.1
    brightness: float = 0.0
    # Off by default: flipping breaks digits, letters and other text-like images.
    horizontal_flip: bool = False
    vertical_flip: bool = False
    # Mix pairs of training images and their labels (Beta(alpha, alpha) weights); 0 is off.
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    # Texts: drop each token with this probability / swap each token with its neighbour with this probability.
    token_dropout: float = 0.0
    random_swap: float = 0.0


IMAGE_ARCHITECTURES = ("cnn", "resnet", "separable")
TEXT_ARCHITECTURES = ("cnn", "kim", "bigru", "transformer", "ngram", "hybrid")
WIDE_MODES = ("blend", "joint")
LINEAR_MODELS = ("ensemble", "select")


@dataclass(frozen=True)
class ImageModelConfig:
    architecture: str = "cnn"
    # Input size; None follows the data: the median image side, at most max_size (no upscaling of
    # small images such as 8x8 or 28x28 unless height/width are set).
    height: int | None = None
    width: int | None = None
    max_size: int = 64
    channels: str = "auto"  # "auto" (grey unless the data has colour), "1" or "3"
    filters: tuple[int, ...] = (32, 64)
    dense_units: int = 128
    # 0.5 measured best on the sample digits (0.992 vs 0.984 at 0.3) and equal on notMNIST: small image
    # sets overfit the dense head first.
    dropout: float = 0.5
    batch_norm: bool = False


@dataclass(frozen=True)
class TextModelConfig:
    # hybrid measured best of the families on MR, CR and SST-2 (docs/BENCHMARKS.md); cnn is 6x faster.
    architecture: str = "hybrid"
    max_tokens: int = 20000
    min_count: int = 1
    # Tokens per text; None follows the data: the length_percentile of training token counts,
    # clipped to [min_length, max_length_limit], so long documents are read past their first sentence.
    max_length: int | None = None
    length_percentile: float = 95.0
    min_length: int = 16
    max_length_limit: int = 512
    # Hashed word-bigram features next to the words; None: for the ngram and hybrid families, which read
    # them, twice the training bigrams (1,024 to 65,536 buckets), else 0 (words only).
    ngram_buckets: int | None = None
    # Hashed character 2-5-grams of each word for the linear half (text_model.wide); it uses them only when
    # they score better on validation. char_buckets None: twice the training set's distinct n-grams, a power
    # of two from 4,096 to 262,144; char_length None: the length_percentile of the training texts' n-gram
    # counts, at most max_char_length. Measured with scikit-learn on our splits, word + char TF-IDF beats
    # words alone by 1.0-1.7 points on CR, MPQA, SUBJ and AG News.
    char_ngrams: bool = True
    char_buckets: int | None = None
    char_length: int | None = None
    max_char_length: int = 1024
    embedding_dim: int = 64
    filters: int = 128
    kernel_size: int = 3  # cnn
    kernel_sizes: tuple[int, ...] = (3, 4, 5)  # kim
    rnn_units: int = 64  # bigru
    heads: int = 2  # transformer
    layers: int = 1  # transformer
    dense_units: int = 64
    dropout: float = 0.3
    # A linear model over the bag of words and bigrams whose logits join the network's (wide & deep). It is
    # fitted in closed form before training (training.models.linear): logistic regression on the TF-IDF bag (with
    # the character n-grams when char_ngrams) and multinomial naive Bayes on the counts.
    wide: bool = True
    # ensemble: both, each temperature-scaled on validation, their logits added. select: the best single
    # candidate on validation (also logistic regression on words alone). Measured on the test splits of MR,
    # SUBJ, CR, MPQA, AG News and SST-2, the ensemble scored best or within 0.5 points of the best candidate
    # on each; picking one on a validation split of a few hundred texts was noise (CR: 0.7807 vs 0.8152).
    linear_model: str = "ensemble"
    # joint: the network trains on top of the warm-started linear half (wide_trainable lets it fine-tune it).
    # blend: the network trains alone, then both halves' logits are added with weights chosen on validation
    # (an ensemble; its validation curves are the network's alone, so tuning cannot compare it fairly). Measured
    # on SUBJ, MPQA, CR and the sample texts (test split), joint won 3 of 4: 0.9108/0.8195/0.8100/0.9554 vs
    # 0.9147/0.8146/0.7997/0.9375.
    wide_mode: str = "joint"
    wide_trainable: bool = True
    # joint: keep the trained network only when the model beats the linear half alone on validation; else
    # the network's output is set to zero and the model is the linear half. On AG News joint training took
    # validation accuracy from 0.8776 (linear) to 0.8614: a network that overfits must not ship.
    require_network_gain: bool = True

    @property
    def linear_members(self) -> int:
        """How many linear models the wide half adds up (models.WeightedBag's bags)."""
        return 2 if self.linear_model == "ensemble" else 1

    def buckets(self) -> int:
        """``ngram_buckets``, or its ceiling: 65,536 for the families that read bigrams, else 0."""
        if self.ngram_buckets is not None:
            return self.ngram_buckets
        return 65536 if self.architecture in ("ngram", "hybrid") else 0


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 40
    batch_size: int = 32
    optimizer: str = "adam"
    # None: 1e-3 for images, 3e-4 for texts (the wide & deep text model's warm-started linear half wants
    # small steps; measured on MR, SUBJ, SST-2, MPQA and AG News, docs/BENCHMARKS.md).
    learning_rate: float | None = None
    # Decoupled weight decay for any optimizer (adamw uses 1e-4 when this is 0); gradient clipping.
    weight_decay: float = 0.0
    clip_norm: float | None = None
    clip_value: float | None = None
    # Learning-rate schedule over the whole run: constant, step (x decay_rate every decay_every_epochs),
    # exponential (x decay_rate per epoch), cosine (with warmup_epochs of linear warmup), cosine_restarts
    # (first cycle restart_epochs long, each next one twice as long), one_cycle (warm up over the first 30%
    # to learning_rate, then anneal).
    lr_schedule: str = "constant"
    warmup_epochs: float = 0.0
    decay_every_epochs: int = 10
    decay_rate: float = 0.5
    restart_epochs: int = 10
    # ReduceLROnPlateau on the early-stopping monitor; applies with the constant schedule only.
    reduce_lr_on_plateau: bool = True
    reduce_lr_patience: int = 3
    reduce_lr_factor: float = 0.5
    min_learning_rate: float = 1e-5
    label_smoothing: float = 0.0
    l1: float = 0.0
    l2: float = 0.0
    early_stopping_monitor: str = "val_loss"
    early_stopping_mode: str = "auto"
    early_stopping_patience: int = 6
    early_stopping_min_delta: float = 0.0
    # Hardware: mixed_float16 (auto = on GPU only), XLA compilation, and the distribution strategy
    # (auto = MirroredStrategy when more than one GPU is visible; mirrored; none).
    mixed_precision: str = "auto"
    jit_compile: bool = False
    distribute: str = "auto"
    seed: int = 42
    # "auto": balanced class weights when the largest class is over imbalance_ratio times the smallest.
    class_weights: str = "auto"
    imbalance_ratio: float = 3.0


# fp32 is always made: it is the reference every other variant is measured against.
COMPRESSION_VARIANTS = ("int8", "pruned", "pruned_int8", "qat", "pruned_qat", "fp16")
SELECTION_OBJECTIVES = ("balanced", "smallest", "fastest")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
SERVING_DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class CompressConfig:
    # fp32 ONNX must reproduce Keras probabilities to this max absolute difference.
    parity_tolerance: float = 1e-4
    # A variant may be served only within this validation accuracy drop from fp32 (1 point); among those,
    # the objective picks: smallest (gzip bytes), fastest (p50 at latency_batch 1 or 32), or balanced (the
    # smallest that is not slower than fp32 at batch 1 or 32, within latency_slack of timing noise).
    max_accuracy_drop: float = 0.01
    objective: str = "balanced"
    latency_batch: int = 1
    latency_slack: float = 0.05
    # ...plus this much absolute (ms): sub-0.1 ms timings jitter by more than 5% between runs.
    latency_floor_ms: float = 0.01
    # Where the served model runs: fp16 is only eligible for cuda, and the timings run there when it exists.
    serving_device: str = "cpu"
    threads: int = 0  # ONNX Runtime intra-op threads for the timings; 0: all cores (recorded per variant)
    calibration_samples: int = 256
    # Activation ranges for static INT8: minmax, entropy (KL) or percentile (99.999th).
    calibration: str = "minmax"
    # Text models: static QDQ and dynamic INT8 within this accuracy of each other count as equal, and the
    # faster is kept; otherwise the more accurate.
    int8_equal_accuracy: float = 0.002
    latency_runs: int = 50
    # Variants made besides fp32: int8 (ORT post-training), pruned (tfmot magnitude pruning, fine-tuned),
    # pruned_int8, qat (tfmot quantization-aware training), pruned_qat (prune-preserving QAT), fp16 (GPU).
    variants: tuple[str, ...] = COMPRESSION_VARIANTS
    sparsity: float = 0.75
    sparsity_overrides: dict[str, float] = field(default_factory=dict)  # layer name -> target sparsity
    prune_epochs: int | None = None  # None: 3 for images, 2 for texts (compression.prune.prune_epochs_for)
    prune_learning_rate_factor: float = 0.5  # fine-tuning learning rate (pruning and QAT), relative to training's
    qat_epochs: int = 2
    # QAT only where tfmot's supported layers hold at least this share of the weights (not text models,
    # whose embeddings and Conv1D tfmot cannot quantize).
    qat_min_coverage: float = 0.5


@dataclass(frozen=True)
class GateConfig:
    # New version must be no worse than production by more than this, on accuracy and macro-F1.
    metric_tolerance: float = 0.01
    max_model_bytes: int | None = None
    max_latency_ms: float | None = None


@dataclass(frozen=True)
class RunConfig:
    model_name: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    image_model: ImageModelConfig = field(default_factory=ImageModelConfig)
    text_model: TextModelConfig = field(default_factory=TextModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    compress: CompressConfig = field(default_factory=CompressConfig)
    gate: GateConfig = field(default_factory=GateConfig)


DEFAULT_LEARNING_RATES = {"image": 1e-3, "text": 3e-4}


def train_config_for(cfg: RunConfig, task: str) -> TrainConfig:
    """``cfg.train`` with the learning rate filled in for the task when it was left unset."""
    if cfg.train.learning_rate is not None:
        return cfg.train
    return dataclasses.replace(cfg.train, learning_rate=DEFAULT_LEARNING_RATES[task])


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return _build(annotation, value, where)  # type: ignore[arg-type]
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = typing.get_args(annotation)[0]
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        item = typing.get_args(annotation)[1]
        return {str(k): _coerce(v, item, f"{where}.{k}") for k, v in value.items()}
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation is str and isinstance(value, str | int):
        return str(value)
    raise ConfigError(f"{where}: expected {getattr(annotation, '__name__', annotation)}, got {value!r}")


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


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
    data = merge_config(data, overrides or {})
    config: RunConfig = _build(RunConfig, data, "")
    _validate(config)
    return config


def _check_choice(key: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"{key} {value!r} is unknown; choose one of: {', '.join(valid)}")


def _validate(cfg: RunConfig) -> None:
    d = cfg.data
    if not (0 < d.val_fraction < 1 and 0 < d.test_fraction < 1 and d.val_fraction + d.test_fraction < 0.9):
        raise ConfigError("data.val_fraction and data.test_fraction must be in (0, 1) and sum below 0.9")
    tr = cfg.train
    _check_choice("image_model.architecture", cfg.image_model.architecture, IMAGE_ARCHITECTURES)
    _check_choice("text_model.architecture", cfg.text_model.architecture, TEXT_ARCHITECTURES)
    _check_choice("text_model.wide_mode", cfg.text_model.wide_mode, WIDE_MODES)
    _check_choice("text_model.linear_model", cfg.text_model.linear_model, LINEAR_MODELS)
    _check_choice("train.optimizer", tr.optimizer, OPTIMIZERS)
    _check_choice("train.lr_schedule", tr.lr_schedule, LR_SCHEDULES)
    _check_choice("train.early_stopping_mode", tr.early_stopping_mode, EARLY_STOPPING_MODES)
    _check_choice("train.mixed_precision", tr.mixed_precision, ("auto", "on", "off"))
    _check_choice("train.distribute", tr.distribute, ("auto", "mirrored", "none"))
    if cfg.text_model.embedding_dim % max(1, cfg.text_model.heads):
        raise ConfigError("text_model.embedding_dim must be a multiple of text_model.heads")
    if cfg.image_model.channels not in ("auto", "1", "3"):
        raise ConfigError(f"image_model.channels must be auto, 1 or 3, got {cfg.image_model.channels!r}")
    if cfg.train.epochs < 1 or cfg.train.batch_size < 1:
        raise ConfigError("train.epochs and train.batch_size must be at least 1")
    if not 0 <= tr.label_smoothing < 1 or tr.weight_decay < 0 or tr.l1 < 0 or tr.l2 < 0:
        raise ConfigError("train.label_smoothing must be in [0, 1); weight_decay, l1 and l2 must be >= 0")
    if (
        (tr.learning_rate is not None and tr.learning_rate <= 0)
        or tr.decay_every_epochs < 1
        or tr.restart_epochs < 1
        or tr.warmup_epochs < 0
    ):
        raise ConfigError("train.learning_rate must be > 0, decay_every_epochs and restart_epochs >= 1, warmup >= 0")
    cc = cfg.compress
    _check_choice("compress.objective", cc.objective, SELECTION_OBJECTIVES)
    if cc.latency_batch not in (1, 32) or cc.latency_slack < 0 or cc.threads < 0:
        raise ConfigError("compress.latency_batch must be 1 or 32; latency_slack and threads must be >= 0")
    for variant in cc.variants:
        _check_choice("compress.variants", variant, COMPRESSION_VARIANTS)
    _check_choice("compress.calibration", cc.calibration, CALIBRATION_METHODS)
    _check_choice("compress.serving_device", cc.serving_device, SERVING_DEVICES)
    if cc.qat_epochs < 1 or not 0 <= cc.qat_min_coverage <= 1 or cc.latency_floor_ms < 0:
        raise ConfigError("compress.qat_epochs must be >= 1, qat_min_coverage in [0, 1], latency_floor_ms >= 0")
    if not 0 <= cc.sparsity < 1 or any(not 0 <= v < 1 for v in cc.sparsity_overrides.values()):
        raise ConfigError("compress.sparsity and compress.sparsity_overrides values must be in [0, 1)")
    if (cc.prune_epochs is not None and cc.prune_epochs < 1) or cc.prune_learning_rate_factor <= 0:
        raise ConfigError("compress.prune_epochs must be at least 1 and prune_learning_rate_factor > 0")
    if d.image_cache not in IMAGE_CACHES:
        raise ConfigError(f"data.image_cache must be one of {', '.join(IMAGE_CACHES)}, got {d.image_cache!r}")
    if d.image_cache == "disk" and not d.cache_dir:
        raise ConfigError("data.image_cache: disk needs data.cache_dir, a directory for the cache files")
    if cfg.train.class_weights not in CLASS_WEIGHTS:
        raise ConfigError(
            f"train.class_weights must be one of {', '.join(CLASS_WEIGHTS)}, got {cfg.train.class_weights!r}"
        )
    t = cfg.text_model
    if not 1 <= t.min_length <= t.max_length_limit or not 0 < t.length_percentile <= 100:
        raise ConfigError("text_model needs 1 <= min_length <= max_length_limit and 0 < length_percentile <= 100")
    a = cfg.augment
    if not (0 <= a.token_dropout < 1 and 0 <= a.random_swap <= 1 and a.mixup_alpha >= 0 and a.cutmix_alpha >= 0):
        raise ConfigError("augment.token_dropout must be in [0, 1), random_swap in [0, 1], mixup/cutmix alpha >= 0")
    if d.min_examples_per_class < 3:
        raise ConfigError("data.min_examples_per_class must be at least 3 (one each for train, validation, test)")


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
