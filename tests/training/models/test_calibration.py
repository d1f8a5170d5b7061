"""Temperature scaling and calibration error on scores whose true calibration is known."""

from __future__ import annotations

import numpy as np

from training.models.calibration import (
    calibrated,
    calibration_metrics,
    expected_calibration_error,
    fit_calibration,
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


def _one_vs_rest_draws(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Margins of a one-vs-rest model whose true probabilities are its classes' sigmoids normalised,
    p ~ sigmoid(2 z - 1): no temperature on softmax(z) has this shape."""
    rng = np.random.default_rng(seed)
    margins = rng.normal(-1.0, 1.5, (n, classes))
    truth = 1.0 / (1.0 + np.exp(-(2.0 * margins - 1.0)))
    truth /= truth.sum(axis=1, keepdims=True)
    return margins, np.array([rng.choice(classes, p=row) for row in truth])


def test_validation_chooses_the_sigmoid_link_for_one_vs_rest_margins_and_it_calibrates_them() -> None:
    margins, y = _one_vs_rest_draws(3000, 12, seed=5)
    fitted = fit_calibration(margins, y)
    assert fitted["link"] == "sigmoid" and fitted["temperature"] == 1.0
    assert fitted["held_out_brier"]["sigmoid"] < fitted["held_out_brier"]["temperature"]
    assert 1.7 < fitted["slope"] < 2.3 and -1.5 < fitted["shift"] < -0.5
    fresh, y_fresh = _one_vs_rest_draws(6000, 12, seed=6)  # items the map was not fitted on
    by_temperature = calibrated(fresh, {"link": "temperature", "temperature": fit_temperature(_softmax(margins), y)})
    assert expected_calibration_error(calibrated(fresh, fitted), y_fresh) < 0.02
    assert expected_calibration_error(by_temperature, y_fresh) > 0.04


def test_validation_keeps_the_temperature_for_softmax_scores_and_small_or_unlabelled_splits() -> None:
    logits, y = _calibrated_draws(3000, 6, seed=7)
    fitted = fit_calibration(logits * 3.0, y)
    assert fitted["link"] == "temperature" and 2.6 < fitted["temperature"] < 3.4
    assert set(fitted["held_out_brier"]) == {"temperature", "sigmoid"}
    few = fit_calibration(logits[:20] * 3.0, y[:20])  # too few to choose on: temperature, no choice recorded
    assert few["link"] == "temperature" and "held_out_brier" not in few
    assert fit_calibration(logits, np.full(len(y), -1)) == {"link": "temperature", "temperature": 1.0}


def test_the_sigmoid_link_is_offered_only_for_one_vs_rest_margins_of_three_classes_or_more() -> None:
    import dataclasses

    from training.models.linear import LinearFit, ships_margins

    margins, y = _one_vs_rest_draws(3000, 12, seed=8)
    assert fit_calibration(margins, y, ("temperature",))["link"] == "temperature"  # a network's logits
    two = fit_calibration(margins[:, :2], np.minimum(y, 1))  # two classes: not Platt scaling, so not tried
    assert two["link"] == "temperature" and "held_out_brier" not in two
    fit = LinearFit("linear_svm", np.ones((3, 1)), np.zeros((3, 1, 2)), np.zeros(2), {}, 0.9)
    assert ships_margins(fit, {"network_kept": False})
    assert not ships_margins(fit, {"network_kept": True}) and not ships_margins(fit, {})
    assert not ships_margins(None, {"network_kept": False})
    assert not ships_margins(dataclasses.replace(fit, name="logistic_regression"), {"network_kept": False})
