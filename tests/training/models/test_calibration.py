"""Temperature scaling and calibration error on scores whose true calibration is known."""

from __future__ import annotations

import numpy as np

from training.models.calibration import (
    calibration_metrics,
    expected_calibration_error,
    fit_temperature,
    reliability,
    rescaled,
)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _calibrated_draws(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits): a perfectly calibrated model's outputs."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.0, (n, classes))
    p = _softmax(logits)
    y = np.array([rng.choice(classes, p=row) for row in p])
    return logits, y


def test_an_overconfident_model_gets_its_temperature_back_and_a_small_error() -> None:
    logits, y = _calibrated_draws(6000, 4, seed=1)
    overconfident = _softmax(logits * 3.0)  # the same model with its logits tripled
    assert expected_calibration_error(overconfident, y) > 0.1
    t = fit_temperature(overconfident, y)
    assert 2.7 < t < 3.3
    assert expected_calibration_error(rescaled(overconfident, t), y) < 0.03
    # temperature never changes the top-1 class
    assert np.array_equal(rescaled(overconfident, t).argmax(axis=1), overconfident.argmax(axis=1))


def test_rescaled_is_softmax_of_logits_over_t_and_inverts() -> None:
    logits, _ = _calibrated_draws(50, 5, seed=2)
    p = _softmax(logits)
    assert np.allclose(rescaled(p, 2.5), _softmax(logits / 2.5), atol=1e-9)
    assert np.allclose(rescaled(rescaled(p, 2.5), 1 / 2.5), p, atol=1e-9)


def test_reliability_bins_count_every_item_and_ece_is_zero_only_when_confidence_is_accuracy() -> None:
    p = np.array([[0.75, 0.25]] * 4 + [[0.1, 0.9]] * 10)
    y = np.array([0, 0, 0, 1] + [1] * 9 + [0])
    r = reliability(p, y)
    assert sum(r["count"]) == 14 and r["accuracy"] == [0.75, 0.9]
    assert expected_calibration_error(p, y) == 0.0
    assert expected_calibration_error(p, 1 - y) > 0.5
    # the metrics of a graph with temperature 2 built in: its own scores, and the scores without it
    both = calibration_metrics(rescaled(p, 2.0), p, y)
    assert both["ece_uncalibrated"] == 0.0 and both["ece"] > 0.0


def test_no_known_label_leaves_the_temperature_at_one() -> None:
    assert fit_temperature(np.full((3, 2), 0.5), np.array([-1, -1, -1])) == 1.0


def test_a_few_wrong_labels_do_not_drag_the_temperature() -> None:
    """5% of the validation labels flipped: a log-loss fit would soften every score to pay for them; the Brier
    fit stays near the model's true calibration."""
    logits, y = _calibrated_draws(4000, 7, seed=3)
    rng = np.random.default_rng(4)
    flipped = rng.random(len(y)) < 0.05
    noisy = np.where(flipped, (y + rng.integers(1, 7, len(y))) % 7, y)
    t = fit_temperature(_softmax(logits), noisy)
    assert 0.95 < t < 1.1  # the log-loss fit gives 1.14 here
    assert expected_calibration_error(rescaled(_softmax(logits), t), y) < 0.03
