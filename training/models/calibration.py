"""Calibration maps for served scores and how well scores are calibrated (numpy and scipy only; no TensorFlow).

A model's logits divided by one temperature T give probabilities whose confidence matches their accuracy far
better than the raw softmax does (Guo et al. 2017), and the argmax, hence accuracy, does not change. Kiln fits a
map on the selection model's validation logits and builds it into every exported graph
(compression.export.with_calibration); ECE measures the result. Two families (``LINKS``):

- ``temperature``: softmax(logits / T). Right for a network trained on the softmax's log-loss.
- ``sigmoid``: softmax(log_sigmoid(u) + LEAK * u) for u = a * logits + b, i.e. each class's sigmoid normalised
  over the classes (the leak is explained at LEAK), with T = 1. Right for one-vs-rest margins (the linear
  SVM's): no temperature fits their shape. On validation-only splits of four text sets' train files (a TF-IDF
  linear SVM fitted on 70%, the map on half the rest, ECE on the other half) it left 0.058 against T's 0.113 on
  ohsumed23, 0.017 against 0.029 on clinc150, and tied on mr and cr.

Training offers the sigmoid link only where the logits are one-vs-rest margins (a linear SVM shipped alone,
training.models.linear.ships_margins): a network's softmax logits are known only up to a shift per item,
which the link would read as meaning. ``fit_calibration`` then fits both, each on one half of validation and
scored on the other (then the other way), and keeps the one with the lower held-out Brier score (ties:
temperature), fitted again on all of validation.

T minimises the validation Brier score, not the log-loss. Real labels carry errors, and one confidently
"wrong" prediction on a mislabelled item costs the log-loss without bound, so the log-loss's T softens every
score to pay for a few bad labels. The Brier score is proper too but bounded per item. On simulated models with
5% of the labels flipped, the Brier T roughly halved the test ECE left by the log-loss T (for example 0.055 ->
0.024 with 7 classes, 0.10 -> 0.025 with 150); on clean labels it was a little worse (0.017 -> 0.022).

>>> import numpy as np
>>> p = np.array([[0.99, 0.01], [0.98, 0.02], [0.97, 0.03], [0.96, 0.04]])
>>> y = np.array([0, 1, 0, 1])
>>> fit_temperature(p, y) > 1  # overconfident: half right at 97% confidence, so T softens the scores
True
>>> expected_calibration_error(p, y)  # 97% sure on average, right half the time
0.475
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize, minimize_scalar

ECE_BINS = 15  # equal-width confidence bins, as in Guo et al. 2017 and most reports of ECE
_TINY = 1e-30  # log of a probability that underflowed to 0
LINKS = ("temperature", "sigmoid")  # the calibration families, the first the default and the tie-breaker
# The sigmoid link's leak: log_sigmoid(u) + LEAK * u. log_sigmoid flattens to 0 beyond u ~ 17, where two classes'
# float32 scores would tie and argmax take the first; with the leak they stay apart unless their u differ by less
# than about 1e-5 (the raw softmax: 1e-7). The fit includes it, so it is part of the family, not an error.
LEAK = 1e-2
# Fewer validation items than this (or one class): the temperature alone. Halves of fewer items cannot tell a
# two-parameter family from a one-parameter one: the Brier difference is within its own noise.
MIN_CHOICE_ITEMS = 200
IDENTITY_MAP: dict[str, Any] = {"link": "temperature", "temperature": 1.0}  # no calibration (nothing to fit on)


def log_loss(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean())


def temperature(logits: np.ndarray, y: np.ndarray, most: float = float(np.exp(4.0))) -> float:
    """The scale of ``logits`` that minimises the validation log-loss (Guo et al. 2017), in [e^-6, ``most``]:
    a multiplier, the inverse of a temperature."""
    bounds = (-6.0, float(np.log(most)))
    found = minimize_scalar(lambda t: log_loss(logits * np.exp(t), y), bounds=bounds, method="bounded")
    return float(np.exp(found.x))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def as_logits(probabilities: np.ndarray) -> np.ndarray:
    """Logits that give ``probabilities`` back through a softmax (the log; softmax ignores the constant)."""
    return np.log(np.maximum(np.asarray(probabilities, dtype=np.float64), _TINY))


def brier(probabilities: np.ndarray, y: np.ndarray) -> float:
    """The mean squared distance between the probabilities and the one-hot labels."""
    off = probabilities.copy()
    off[np.arange(len(y)), y] -= 1.0
    return float(np.mean(np.sum(off**2, axis=1)))


def fit_temperature(probabilities: np.ndarray, y: np.ndarray) -> float:
    """The temperature T in [e^-4, e^4] for which softmax(logits / T) has the least Brier score on
    (probabilities, y), the model's outputs on items it did not learn from. 1.0 when there are none."""
    known = np.asarray(y) >= 0
    if not known.any():
        return 1.0
    p, labels = probabilities[known], np.asarray(y)[known]
    found = minimize_scalar(
        lambda t: brier(rescaled(p, float(np.exp(t))), labels), bounds=(-4.0, 4.0), method="bounded"
    )
    return float(np.exp(found.x))


def rescaled(probabilities: np.ndarray, t: float) -> np.ndarray:
    """softmax(logits / t) for the logits behind ``probabilities``: what a graph with temperature t gives.
    ``rescaled(p, 1 / t)`` undoes a temperature already applied only while no score saturated: float32 scores of
    a small T are mostly exactly 0 or 1, so served graphs are scored without T by
    compression.export.without_calibration instead."""
    return softmax(as_logits(probabilities) / t)


def saved_map(saved: dict[str, Any] | None) -> dict[str, Any]:
    """A calibration map as saved in a run's decisions or a version's report: maps from before the sigmoid link
    lack ``link`` (they were all temperatures), and a version from before calibration has none (the identity)."""
    return {**IDENTITY_MAP, **(saved or {})}


def link_logits(logits: np.ndarray, calibration: dict[str, Any]) -> np.ndarray:
    """What the graph's softmax reads after the calibration map: the logits through the link, over T."""
    z = np.asarray(logits, dtype=np.float64)
    if calibration.get("link", "temperature") == "sigmoid":
        u = float(calibration["slope"]) * z + float(calibration["shift"])
        z = -np.logaddexp(0.0, -u) + LEAK * u
    return z / float(calibration["temperature"])


def calibrated(logits: np.ndarray, calibration: dict[str, Any]) -> np.ndarray:
    """The probabilities a graph with ``calibration`` built in serves for ``logits``."""
    return softmax(link_logits(logits, calibration))


def _fit_temperature_map(logits: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    return {"link": "temperature", "temperature": round(fit_temperature(softmax(logits), y), 6)}


def _fit_sigmoid_map(logits: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The slope a > 0 and shift b of the sigmoid link with the least Brier score, started from the slope the
    temperature fit gives (1 / T), so either scale of logits starts near its answer."""
    start = np.log(1.0 / fit_temperature(softmax(logits), y))

    def loss(v: np.ndarray) -> float:
        return brier(calibrated(logits, _sigmoid(v)), y)

    found = minimize(loss, x0=[start, 0.0], method="L-BFGS-B", bounds=[(-8.0, 8.0), (-30.0, 30.0)])
    return _sigmoid(found.x, digits=6)


def _sigmoid(v: np.ndarray, digits: int | None = None) -> dict[str, Any]:
    """The sigmoid link of (log slope, shift) ``v``; rounded for the report once fitted, never inside the fit
    (its finite-difference steps are smaller than the rounding)."""
    slope, shift = float(np.exp(v[0])), float(v[1])
    if digits is not None:
        slope, shift = round(slope, digits), round(shift, digits)
    return {"link": "sigmoid", "temperature": 1.0, "slope": slope, "shift": shift}


FITTERS = {"temperature": _fit_temperature_map, "sigmoid": _fit_sigmoid_map}


def held_out_brier(logits: np.ndarray, y: np.ndarray, link: str, seed: int = 0) -> float:
    """The Brier score of ``link``'s map fitted on one half of (logits, y) and scored on the other, both ways."""
    order = np.random.default_rng(seed).permutation(len(y))
    halves = (order[: len(y) // 2], order[len(y) // 2 :])
    total = 0.0
    for fit_on, score_on in (halves, halves[::-1]):
        fitted = FITTERS[link](logits[fit_on], y[fit_on])
        total += brier(calibrated(logits[score_on], fitted), y[score_on]) * len(score_on)
    return total / len(y)


def fit_calibration(logits: np.ndarray, y: np.ndarray, links: tuple[str, ...] = LINKS, seed: int = 0) -> dict[str, Any]:
    """The calibration map for a model's ``logits`` on items it did not learn from (validation), with labels
    ``y`` (-1: unknown, left out): of the families ``links``, the one with the lower held-out Brier score,
    fitted on all of them. ``held_out_brier`` records a choice. The sigmoid link is only tried with three
    classes or more (with two it is not Platt scaling, which would need a bias that can move labels) and
    ``MIN_CHOICE_ITEMS`` labelled items. Identity (T = 1) without labels."""
    known = np.asarray(y) >= 0
    if not known.any():
        return dict(IDENTITY_MAP)
    z, labels = np.asarray(logits, dtype=np.float64)[known], np.asarray(y)[known]
    if z.shape[1] < 3 or len(labels) < MIN_CHOICE_ITEMS or len(np.unique(labels)) < 2:
        links = ("temperature",)
    if len(links) == 1:
        return FITTERS[links[0]](z, labels)
    scores = {link: held_out_brier(z, labels, link, seed) for link in links}
    best = min(links, key=lambda link: (round(scores[link], 6), LINKS.index(link)))
    return {**FITTERS[best](z, labels), "held_out_brier": {k: round(v, 6) for k, v in scores.items()}}


def describe_map(calibration: dict[str, Any]) -> str:
    """One line for logs and reports: which family, with its parameters."""
    if calibration.get("link") == "sigmoid":
        return f"sigmoid link, slope {calibration['slope']:.3f}, shift {calibration['shift']:.3f}"
    return f"temperature {calibration['temperature']:.3f}"


def reliability(probabilities: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> dict[str, list[float]]:
    """Per equal-width bin of top-1 confidence: the mean confidence, the accuracy and the item count (empty
    bins left out). Unknown labels (-1) count as misses, as in every other metric."""
    confidence = np.max(probabilities, axis=1)
    correct = (np.argmax(probabilities, axis=1) == y).astype(np.float64)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    out: dict[str, list[float]] = {"confidence": [], "accuracy": [], "count": []}
    for b in range(bins):
        members = which == b
        if members.any():
            out["confidence"].append(float(confidence[members].mean()))
            out["accuracy"].append(float(correct[members].mean()))
            out["count"].append(int(members.sum()))
    return out


def expected_calibration_error(probabilities: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """The mean gap between confidence and accuracy over the confidence bins, weighted by their items."""
    if not len(y):
        return 0.0
    r = reliability(probabilities, y, bins)
    gaps = np.abs(np.array(r["confidence"]) - np.array(r["accuracy"]))
    return round(float(np.dot(gaps, r["count"]) / len(y)), 6)


def calibration_metrics(served: np.ndarray, uncalibrated: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """ECE of probabilities from a graph with its calibration map built in, and of the same graph without it
    (compression.export.without_calibration)."""
    return {
        "ece": expected_calibration_error(served, y),
        "ece_uncalibrated": expected_calibration_error(uncalibrated, y),
    }
