"""The wide half of a wide & deep text model: a linear classifier over the model's own word and bigram ids,
fitted in closed form on the training split, then joined to the network in one of two ways.

Up to three linear models are fitted and the best on the validation split is kept: multinomial logistic
regression on the L2-normalised TF-IDF bag of words and bigrams (the TF-IDF + linear SVM family), strength
chosen on validation; multinomial naive Bayes on their counts (which wins on subjectivity-style data, Wang &
Manning 2012); and logistic regression with the words' character n-grams added (the spec's char ids). All
are exactly what ``models.WeightedBag`` computes with the right per-id weights (0 for ids a model does not
read), so serving still sends only ids.

- ``joint`` (the default): the wide half is warm-started before training, so the model starts as the
  linear classifier and the network learns what it misses.
- ``blend``: the network trains alone with the wide half at zero; afterwards both halves' logits are
  temperature-scaled and added with a weight chosen on validation, by editing weights only (an ensemble).

    >>> fit = fit_linear_models(train_ids, train_y, val_ids, val_y, vocabulary, 2, False)  # doctest: +SKIP
    >>> warm_start(model, fit)  # joint  # doctest: +SKIP
    >>> blend(model, fit, val_ids, val_y)  # blend, after training  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize_scalar

log = logging.getLogger(__name__)

# Inverse regularisation strengths tried; the one with the best validation accuracy wins.
C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)  # weakly regularised ends win on short texts (30 chosen on 3 of 7 sets)
NB_ALPHAS = (0.1, 0.3, 1.0)  # naive Bayes smoothing; hashed bigrams want little
BLEND_WEIGHTS = np.linspace(0.0, 1.0, 21)  # the linear half's share of the blended logits


@dataclass
class LinearFit:
    """One fitted linear model as the wide layers hold it: logits = bag(ids, id_weights) @ weights + bias."""

    name: str  # logistic_regression | naive_bayes | logistic_regression_chars
    id_weights: np.ndarray  # per id: IDF for logistic regression, ones for naive Bayes; 0 for ids not read
    weights: np.ndarray  # (vocabulary, classes)
    bias: np.ndarray  # (classes,)
    params: dict[str, float]
    val_accuracy: float
    tried: dict[str, float] = field(default_factory=dict)  # validation accuracy of each model fitted

    @property
    def reads_char_ngrams(self) -> bool:
        return self.name == "logistic_regression_chars"

    def first_ids(self, vocabulary: int) -> LinearFit:
        """The same model over the first ``vocabulary`` ids (the ones it reads: the rest have weight 0)."""
        assert not self.id_weights[vocabulary:].any(), "the dropped ids carry weight"
        return dataclasses.replace(self, id_weights=self.id_weights[:vocabulary], weights=self.weights[:vocabulary])

    def logits(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray(bag(ids, self.id_weights) @ self.weights) + self.bias

    def summary(self) -> dict[str, Any]:
        return {
            "linear_model": self.name,
            **self.params,
            "val_accuracy": round(self.val_accuracy, 4),
            "candidates": dict(self.tried),
        }


def counts(ids: np.ndarray, vocabulary: int) -> sp.csr_matrix:
    """(N, vocabulary) occurrence counts of the non-padding ids in each row."""
    rows = np.repeat(np.arange(len(ids)), ids.shape[1])
    cols = ids.ravel()
    keep = cols != 0
    matrix = sp.csr_matrix((np.ones(int(keep.sum())), (rows[keep], cols[keep])), shape=(len(ids), vocabulary))
    matrix.sum_duplicates()
    return matrix


def inverse_document_frequency(ids: np.ndarray, vocabulary: int) -> np.ndarray:
    """Smoothed IDF as scikit-learn computes it: log((1 + n) / (1 + df)) + 1; unseen ids get the largest."""
    df = np.asarray((counts(ids, vocabulary) > 0).sum(axis=0)).ravel()
    return np.log((1 + len(ids)) / (1 + df)) + 1


def bag(ids: np.ndarray, idf: np.ndarray) -> sp.csr_matrix:
    """The features models.WeightedBag sees: count * idf per id, over sqrt(sum of squared idf of each occurrence)."""
    weighted = counts(ids, len(idf)) @ sp.diags(idf)
    occurrence = np.where(ids != 0, idf[ids], 0.0)
    norm = np.sqrt(np.maximum((occurrence**2).sum(axis=1), 1e-12))
    return sp.csr_matrix(sp.diags(1 / norm) @ weighted)


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(logits.argmax(axis=1) == y)) if len(y) else 0.0


def _widen(coef: np.ndarray, intercept: np.ndarray, seen: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(features, seen classes) weights into (features, classes): a class absent from training keeps zeros."""
    full = np.zeros((coef.shape[0], classes))
    full[:, seen] = coef
    bias = np.zeros(classes)
    bias[seen] = intercept
    return full, bias


def fit_linear(
    x: sp.csr_matrix, y: np.ndarray, xv: sp.csr_matrix, yv: np.ndarray, classes: int, balanced: bool
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Logistic regression: weights (features, classes), intercepts (classes), the chosen C and its
    validation accuracy."""
    from sklearn.linear_model import LogisticRegression

    best: tuple[float, Any, float] | None = None
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=2000, class_weight="balanced" if balanced else None)
        model.fit(x, y)
        score = float(model.score(xv, yv)) if len(yv) else -c  # no validation split: the strongest penalty
        if best is None or score > best[0]:
            best = (score, model, c)
    assert best is not None
    score, model, c = best
    coef, intercept = model.coef_.T, model.intercept_
    if coef.shape[1] == 1:  # two classes seen: one weight vector; softmax wants one per class
        coef = np.concatenate([-coef / 2, coef / 2], axis=1)
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    full, bias = _widen(coef, intercept, model.classes_, classes)
    return full, bias, c, score


def fit_naive_bayes(
    x: sp.csr_matrix, y: np.ndarray, xv: sp.csr_matrix, yv: np.ndarray, classes: int, balanced: bool
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Multinomial naive Bayes on counts ``x``; its log-probabilities are scored, as the model computes
    them, on the count bag divided by sqrt(tokens) (``xv``), where the prior is not divided. Each feature's
    row is centred over the classes: a per-id constant cancels in the softmax, and small values quantize
    well. Returns weights, bias, the chosen smoothing alpha and its validation accuracy."""
    from sklearn.naive_bayes import MultinomialNB

    best: tuple[float, np.ndarray, np.ndarray, float] | None = None
    for alpha in NB_ALPHAS:
        model = MultinomialNB(alpha=alpha, fit_prior=not balanced).fit(x, y)
        log_prob = model.feature_log_prob_.T
        coef = log_prob - log_prob.mean(axis=1, keepdims=True)
        weights, bias = _widen(coef, model.class_log_prior_, model.classes_, classes)
        if len(model.classes_) < classes:  # an unseen class must never win: far below the others' prior
            bias[np.setdiff1d(np.arange(classes), model.classes_)] = model.class_log_prior_.min() - 30.0
        score = accuracy(np.asarray(xv @ weights) + bias, yv) if len(yv) else -alpha
        if best is None or score > best[0]:
            best = (score, weights, bias, alpha)
    assert best is not None
    score, weights, bias, alpha = best
    return weights, bias, alpha, score


def char_weight(ids: np.ndarray, idf: np.ndarray, char_start: int) -> float:
    """The factor on character n-gram IDF that gives them as much L2 mass as the words and bigrams in a
    typical training text: scikit-learn users stack two separately normalised TF-IDF blocks; one norm over
    both needs the blocks balanced, or the n-grams (several per word) drown the words."""
    weight = np.where(ids != 0, idf[ids], 0.0) ** 2
    is_char = ids >= char_start
    words, chars = (weight * ~is_char).sum(axis=1), (weight * is_char).sum(axis=1)
    both = (words > 0) & (chars > 0)
    return float(np.sqrt(np.median(words[both] / chars[both]))) if both.any() else 1.0


def fit_linear_models(
    train_ids: np.ndarray,
    train_y: np.ndarray,
    val_ids: np.ndarray,
    val_y: np.ndarray,
    vocabulary: int,
    classes: int,
    balanced: bool,
    char_start: int | None = None,
) -> LinearFit:
    """Fit logistic regression on the TF-IDF bag of words and bigrams, naive Bayes on their counts and,
    when the ids from ``char_start`` on are character n-grams, logistic regression on words, bigrams and
    n-grams; keep the best on validation (the earlier, simpler one on a tie or without a validation split).
    A model that does not read some ids gives them weight 0, so the layer ignores them."""
    idf = inverse_document_frequency(train_ids, vocabulary)
    words_only = np.ones(vocabulary, dtype=bool)
    if char_start is not None:
        words_only[char_start:] = False
    candidates = []
    word_idf = np.where(words_only, idf, 0.0)
    weights, bias, c, score = fit_linear(
        bag(train_ids, word_idf), train_y, bag(val_ids, word_idf), val_y, classes, balanced
    )
    candidates.append(LinearFit("logistic_regression", word_idf, weights, bias, {"C": c}, score))
    ones = words_only.astype(float)
    read = int(words_only.sum())  # naive Bayes smooths over the features it reads: not the n-gram columns
    weights, bias, alpha, score = fit_naive_bayes(
        counts(np.where(words_only[train_ids], train_ids, 0), vocabulary)[:, :read],
        train_y,
        bag(val_ids, ones)[:, :read],
        val_y,
        classes,
        balanced,
    )
    weights = np.vstack([weights, np.zeros((vocabulary - read, classes))])
    candidates.append(LinearFit("naive_bayes", ones, weights, bias, {"alpha": alpha}, score))
    if char_start is not None:
        char_idf = np.where(words_only, idf, idf * char_weight(train_ids, idf, char_start))
        weights, bias, c, score = fit_linear(
            bag(train_ids, char_idf), train_y, bag(val_ids, char_idf), val_y, classes, balanced
        )
        candidates.append(LinearFit("logistic_regression_chars", char_idf, weights, bias, {"C": c}, score))
    best = candidates[0]
    for fit in candidates[1:]:
        if len(val_y) and fit.val_accuracy > best.val_accuracy:
            best = fit
    best.tried = {fit.name: round(fit.val_accuracy, 4) for fit in candidates}
    log.info(
        "wide half: %s (%s), validation accuracy %.4f (%s; %d features)",
        best.name,
        ", ".join(f"{k}={v:g}" for k, v in best.params.items()),
        best.val_accuracy,
        ", ".join(f"{k} {v:.4f}" for k, v in best.tried.items()),
        vocabulary,
    )
    return best


def _set_wide(model: Any, fit: LinearFit, scale: float = 1.0) -> None:
    model.get_layer("wide_idf").set_weights([fit.id_weights[:, None].astype("float32")])
    model.get_layer("wide_weights").set_weights([(fit.weights * scale).astype("float32")])


def warm_start(model: Any, fit: LinearFit) -> None:
    """joint: load the linear model into the wide half and its intercepts into the output bias, so the
    untrained model (its network's output layer at zero) predicts exactly what the linear model does."""
    _set_wide(model, fit)
    kernel, _ = model.get_layer("deep_logits").get_weights()
    model.get_layer("deep_logits").set_weights([kernel, fit.bias.astype("float32")])


def _log_loss(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean())


def temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The scale of ``logits`` that minimises the validation log-loss (Guo et al. 2017), in [e^-6, e^4]."""
    found = minimize_scalar(lambda t: _log_loss(logits * np.exp(t), y), bounds=(-6.0, 4.0), method="bounded")
    return float(np.exp(found.x))


def choose_blend(deep: np.ndarray, linear: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """Scales (network, linear) for ``scale_d * deep + scale_l * linear``, chosen on validation: each half
    is calibrated by temperature, the linear share w is the best validation accuracy on a grid (ties: the
    lower log-loss), and the sum is calibrated again. Returns (scale_d, scale_l, w, validation accuracy)."""
    if not len(y):  # nothing to choose on: an even, uncalibrated blend
        return 0.5, 0.5, 0.5, 0.0
    t_deep, t_linear = temperature(deep, y), temperature(linear, y)
    mixes = [((1 - w) * t_deep * deep + w * t_linear * linear, w) for w in BLEND_WEIGHTS]
    score, _, share = max((accuracy(mix, y), -_log_loss(mix, y), w) for mix, w in mixes)
    t = temperature((1 - share) * t_deep * deep + share * t_linear * linear, y)
    return t * (1 - share) * t_deep, t * share * t_linear, float(share), score


def deep_logits(model: Any, ids: np.ndarray) -> np.ndarray:
    """The network half's logits (the wide half excluded), as the model's ``deep_logits`` layer computes them."""
    from training.tf_env import keras

    network = keras.Model(model.input, model.get_layer("deep_logits").output)
    return np.asarray(network.predict(ids, batch_size=256, verbose=0), dtype=np.float64)


def blend(model: Any, fit: LinearFit, val_ids: np.ndarray, val_y: np.ndarray) -> dict[str, float]:
    """blend, after the network trained with the wide half at zero: scale the network's output layer and
    load the scaled linear model so the model's logits are the validation-chosen blend of both."""
    deep = deep_logits(model, val_ids)
    scale_d, scale_l, share, score = choose_blend(deep, fit.logits(val_ids), val_y)
    kernel, bias = model.get_layer("deep_logits").get_weights()
    model.get_layer("deep_logits").set_weights(
        [(kernel * scale_d).astype("float32"), (bias * scale_d + fit.bias * scale_l).astype("float32")]
    )
    _set_wide(model, fit, scale_l)
    summary = {
        "network_val_accuracy": round(accuracy(deep, val_y), 4),
        "linear_share": round(share, 2),
        "blend_val_accuracy": round(score, 4),
    }
    log.info(
        "blend: network %.4f, %s %.4f, blended %.4f on validation (linear share %.2f)",
        summary["network_val_accuracy"],
        fit.name,
        fit.val_accuracy,
        score,
        share,
    )
    return summary
