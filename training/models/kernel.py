"""An RBF kernel classifier on an image's pixels, fitted in closed form beside the network; validation decides
whether the network ships, the kernel model alone, or the two blended.

On small grey images (digits, letters, clothing at 28x28) the RBF SVM on raw pixels is the classic peer users
compare with, and it beats a small network trained from scratch on a few thousand images. Kiln fits the same
kind of model (a Nystroem approximation: M landmark training images L, features k(x, L) K_LL^(-1/2) with
k(x, l) = exp(-gamma ||x - l||^2) and gamma = 1 / (values * variance), scikit-learn's "scale"; a linear SVM on
them, one class against the rest, its C chosen on validation) and exports it as ordinary graph nodes: Flatten,
the ``RBFKernel`` layer (the landmarks as a constant), and one Dense layer holding K_LL^(-1/2) W.

The blend is the one the wide & deep text model uses (training.models.linear.choose_blend): each half's logits
temperature-scaled on validation and mixed by the share with the best validation accuracy. The blend ships when
it scores at least as well as both halves alone on validation; else the kernel model alone when it beats the
network (its graph has no network nodes), or ties it with the lower log-loss (each temperature-scaled), else the
network as trained. The refit on training + validation keeps the choice, C and
the scales, and fits both halves again (training.fit.refit).

    >>> fit = fit_kernel(train_x, train_y, val_x, val_y, 10, False, cfg.image_model, seed=42)  # doctest: +SKIP
    >>> model, choice = choose(network, fit, val_x, val_y)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from training.models.calibration import as_logits, log_loss, temperature
from training.models.linear import accuracy, choose_blend

if TYPE_CHECKING:
    from serving.preprocess import ImageSpec
    from training.config import ImageModelConfig

log = logging.getLogger(__name__)

# Inverse regularisation strengths of the linear SVM on the kernel features; the best validation accuracy wins
# (ties: the smaller). The hinge loss replaced logistic regression (C 10-1000), which trailed the RBF SVM peer
# on inner 85/15 splits of the train files (3 seeds): digits 0.9799 (LR, C=10) against 0.9877 (linear SVM,
# C=10) and 0.9892 (exact RBF SVM); notMNIST (6,000 items) 0.9022 against 0.9070 and 0.9100. On notMNIST
# C=1 / 10 / 100 scored 0.9048 / 0.9070 / 0.8970.
KERNEL_C_GRID = (1.0, 10.0, 100.0)
_EIGEN_FLOOR = 1e-10  # K_LL's eigenvalues below this (relative to the largest) are dropped: duplicate landmarks
_CHUNK = 2048  # images per kernel block: bounds the (chunk, landmarks) float64 working set


@dataclass
class KernelFit:
    """A fitted kernel model: logits = rbf(x, landmarks) @ weights + bias, on flattened pixels in [0, 1]."""

    landmarks: np.ndarray  # (M, values) float32
    gamma: float
    weights: np.ndarray  # (M, classes): K_LL^(-1/2) times the logistic regression's weights
    bias: np.ndarray  # (classes,)
    c: float
    val_accuracy: float
    tried: dict[str, float] = field(default_factory=dict)  # validation accuracy per C

    def logits(self, images: np.ndarray) -> np.ndarray:
        return rbf(_flat(images), self.landmarks, self.gamma) @ self.weights + self.bias


@dataclass
class KernelChoice:
    """What validation decided, kept for the refit and the report (training.kernel in report.json)."""

    shipped: str  # network | kernel | blend
    c: float
    kernel_share: float  # the kernel model's share of the blended logits (0: network alone, 1: kernel alone)
    scale_network: float  # what the network's logits are multiplied by in the blend
    scale_kernel: float
    network_val_accuracy: float
    kernel_val_accuracy: float
    blend_val_accuracy: float
    landmarks: int
    candidates: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}

    @classmethod
    def from_summary(cls, saved: dict[str, Any]) -> KernelChoice:
        return cls(**saved)


def kernel_applies(spec: ImageSpec, cfg: ImageModelConfig, train_items: int) -> bool:
    """Whether a kernel model is tried: enabled, a from-scratch network, small images and a small training split."""
    values = spec.height * spec.width * spec.channels
    small = values <= cfg.kernel_max_values and 0 < train_items <= cfg.kernel_max_items
    return cfg.kernel and not cfg.backbone and small


def _flat(images: np.ndarray) -> np.ndarray:
    return np.asarray(images, dtype=np.float32).reshape(len(images), -1)


def rbf(x: np.ndarray, landmarks: np.ndarray, gamma: float) -> np.ndarray:
    """exp(-gamma ||x - l||^2) for every row x and landmark l, in float64, a block of rows at a time."""
    columns = landmarks.T.astype(np.float64)
    lsq = np.sum(columns**2, axis=0)
    blocks = []
    for start in range(0, len(x), _CHUNK):
        part = x[start : start + _CHUNK].astype(np.float64)
        squared = np.sum(part**2, axis=1)[:, None] - 2.0 * part @ columns + lsq[None]
        blocks.append(np.exp(-gamma * np.maximum(squared, 0.0)))
    return np.concatenate(blocks) if blocks else np.zeros((0, len(landmarks)))


def _landmarks(x: np.ndarray, y: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` training images (all of them when there are fewer), each class in proportion to its size
    (seeded): every image gets its class-relative place in a random order of its class, and the first
    ``count`` places win."""
    if len(x) <= count:
        return x.copy()
    rng = np.random.default_rng(seed)
    place = np.empty(len(x))
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        place[rng.permutation(members)] = (np.arange(len(members)) + rng.uniform(size=len(members))) / len(members)
    return x[np.sort(np.argsort(place, kind="stable")[:count])]


def _whitening(landmarks: np.ndarray, gamma: float) -> np.ndarray:
    """K_LL^(-1/2) on the eigenvalues that carry information (Nystroem's feature map)."""
    values, vectors = np.linalg.eigh(rbf(landmarks, landmarks, gamma))
    keep = values > _EIGEN_FLOOR * values.max()
    return vectors[:, keep] / np.sqrt(values[keep])


def _linear_svm(features: np.ndarray, y: np.ndarray, c: float, balanced: bool) -> Any:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    model = LinearSVC(C=c, max_iter=2000, class_weight="balanced" if balanced else None)
    with warnings.catch_warnings():  # weakly regularised fits stop at max_iter: close enough, and bounded
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(features, y)


def _full_weights(model: Any, whitening: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The fitted model as (M, classes) weights on the kernel values and (classes,) bias; a class absent from
    the training labels gets a very negative bias."""
    coef = model.coef_ if len(model.classes_) > 2 else np.vstack([-model.coef_, model.coef_]) / 2
    intercept = model.intercept_ if len(model.classes_) > 2 else np.array([-1.0, 1.0]) * model.intercept_[0] / 2
    weights, bias = np.zeros((whitening.shape[0], classes)), np.full(classes, -30.0)
    weights[:, model.classes_] = whitening @ coef.T
    bias[model.classes_] = intercept
    return weights, bias


def _gamma(x: np.ndarray) -> float:
    """scikit-learn's "scale": 1 / (values per image * variance of all pixel values)."""
    variance = float(np.var(x))
    return 1.0 / (x.shape[1] * variance) if variance > 0 else 1.0


@dataclass
class _Basis:
    """The Nystroem feature map of one set of images: its landmarks, gamma, whitening and the images' features."""

    landmarks: np.ndarray
    gamma: float
    whitening: np.ndarray
    features: np.ndarray

    @classmethod
    def of(cls, images: np.ndarray, y: np.ndarray, count: int, seed: int) -> _Basis:
        x = _flat(images)
        gamma = _gamma(x)
        landmarks = _landmarks(x, y, count, seed)
        whitening = _whitening(landmarks, gamma)
        return cls(landmarks, gamma, whitening, rbf(x, landmarks, gamma) @ whitening)

    def fitted(self, c: float, y: np.ndarray, classes: int, balanced: bool) -> tuple[np.ndarray, np.ndarray]:
        """(M, classes) weights on the kernel values and the bias of the linear SVM at ``c``."""
        return _full_weights(_linear_svm(self.features, y, c, balanced), self.whitening, classes)


def fit_kernel(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    classes: int,
    balanced: bool,
    cfg: ImageModelConfig,
    seed: int,
) -> KernelFit:
    """Fit the kernel model on the training split for each C of KERNEL_C_GRID, keep the best on validation
    (the smallest C when none can be judged)."""
    basis = _Basis.of(train_x, train_y, cfg.kernel_landmarks, seed)
    val_k = rbf(_flat(val_x), basis.landmarks, basis.gamma) if len(val_y) else None
    best: tuple[float, float, Any] | None = None
    tried: dict[str, float] = {}
    for c in KERNEL_C_GRID:
        weights, bias = basis.fitted(c, train_y, classes, balanced)
        score = accuracy(val_k @ weights + bias, val_y) if val_k is not None else 0.0
        tried[f"C={c:g}"] = round(score, 4)
        if best is None or score > best[0]:
            best = (score, c, (weights, bias))
    assert best is not None
    score, c, (weights, bias) = best
    log.info(
        "kernel model: %d landmarks, gamma %.4g, C %g; validation accuracy %s",
        len(basis.landmarks),
        basis.gamma,
        c,
        ", ".join(f"{k} {v:.4f}" for k, v in tried.items()),
    )
    return KernelFit(basis.landmarks.astype(np.float32), basis.gamma, weights, bias, c, score, tried)


def refit_kernel(
    choice: KernelChoice, x: np.ndarray, y: np.ndarray, classes: int, balanced: bool, cfg: ImageModelConfig, seed: int
) -> KernelFit:
    """The chosen kernel model again on training + validation: landmarks and gamma from all of it, C as chosen."""
    basis = _Basis.of(x, y, cfg.kernel_landmarks, seed)
    weights, bias = basis.fitted(choice.c, y, classes, balanced)
    landmarks = basis.landmarks.astype(np.float32)
    return KernelFit(landmarks, basis.gamma, weights, bias, choice.c, choice.kernel_val_accuracy)


# ------------------------------------------------------------------------------------------- in the graph


def _kernel_logits(inputs: Any, fit: KernelFit) -> Any:
    from training.models.layers import RBFKernel
    from training.tf_env import keras

    flat = keras.layers.Flatten(name="kernel_pixels")(inputs)
    features = RBFKernel(len(fit.landmarks), fit.gamma, name="kernel_rbf", dtype="float32")(flat)
    # "wide_": pruning leaves it alone (compression.prune), as it does the text model's linear half.
    return keras.layers.Dense(fit.weights.shape[1], name="wide_kernel", dtype="float32")(features)


def _load(model: Any, fit: KernelFit, scale: float) -> None:
    model.get_layer("kernel_rbf").set_weights([fit.landmarks.astype(np.float32)])
    model.get_layer("wide_kernel").set_weights(
        [(fit.weights * scale).astype(np.float32), (fit.bias * scale).astype(np.float32)]
    )


def kernel_model(shape: tuple[int, ...], fit: KernelFit) -> Any:
    """The kernel model alone as a Keras model: images of ``shape`` (H, W, C) in, ``probabilities`` out, and no
    network layers."""
    from training.tf_env import keras

    inputs = keras.Input(shape, name="image")
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(_kernel_logits(inputs, fit))
    model = keras.Model(inputs, outputs, name="image_kernel")
    _load(model, fit, 1.0)
    return model


def blended_model(network: Any, fit: KernelFit, choice: KernelChoice) -> Any:
    """``network`` and the kernel model in one graph: softmax(scale_network * network logits + scale_kernel *
    kernel logits). The network's output layer is rebuilt without its softmax (same weights, scaled)."""
    from training.tf_env import keras

    layers = keras.layers
    output = network.get_layer("probabilities")
    dense = layers.Dense(output.units, name="deep_logits", dtype="float32")
    deep = dense(output.input)
    logits = layers.Add(dtype="float32", name="logits")([deep, _kernel_logits(network.input, fit)])
    probabilities = layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    model = keras.Model(network.input, probabilities, name=f"{network.name}_kernel")
    w, b = output.get_weights()
    dense.set_weights([(w * choice.scale_network).astype(np.float32), (b * choice.scale_network).astype(np.float32)])
    _load(model, fit, choice.scale_kernel)
    return model


def shipped_model(network: Any, fit: KernelFit, choice: KernelChoice) -> Any:
    """What ``choice`` ships, from a trained network and a kernel fit."""
    if choice.shipped == "network":
        return network
    if choice.shipped == "kernel":
        return kernel_model(tuple(int(d) for d in network.input.shape[1:]), fit)
    return blended_model(network, fit, choice)


def _shipped(network: float, kernel: float, blend: float, share: float, losses: tuple[float, float]) -> str:
    """What ships, by validation accuracy. The blend when it scores at least as well as both halves alone: two
    different models averaged vary less than either, and a few hundred validation images often tie. Else the
    kernel model alone when it beats the network, or ties it with the lower log-loss (``losses``: network's,
    kernel's, each at its fitted temperature), else the network as trained."""
    if 0.0 < share < 1.0 and blend >= max(network, kernel):
        return "blend"
    if kernel != network:
        return "kernel" if kernel > network else "network"
    return "kernel" if losses[1] < losses[0] else "network"


def _calibrated_loss(logits: np.ndarray, y: np.ndarray) -> float:
    return log_loss(temperature(logits, y) * logits, y)


def choose(network: Any, fit: KernelFit, val_x: np.ndarray, val_y: np.ndarray) -> tuple[Any, KernelChoice]:
    """After the network trained: the model validation prefers (the network, the kernel model alone, or the
    blend) and the choice. Without validation items nothing can be judged, and the network ships as trained."""
    if len(val_y):
        deep, kernel = as_logits(network.predict(val_x, batch_size=256, verbose=0)), fit.logits(val_x)
        network_score = accuracy(deep, val_y)
        scale_n, scale_k, share, score = choose_blend(deep, kernel, val_y)
        losses = (_calibrated_loss(deep, val_y), _calibrated_loss(kernel, val_y))
    else:
        network_score, (scale_n, scale_k, share, score), losses = 0.0, (1.0, 0.0, 0.0, 0.0), (0.0, 0.0)
    shipped = _shipped(network_score, fit.val_accuracy, score, share, losses)
    choice = KernelChoice(
        shipped, fit.c, share, scale_n, scale_k, network_score, fit.val_accuracy, score, len(fit.landmarks), fit.tried
    )
    log.info(
        "on validation: kernel model %.4f, network %.4f, blend %.4f (kernel share %.2f): ships %s",
        fit.val_accuracy,
        network_score,
        score,
        share,
        {"network": "the network alone", "kernel": "the kernel model alone", "blend": "the blend"}[shipped],
    )
    return shipped_model(network, fit, choice), choice
