"""Label-error audit: which training and validation items look mislabelled.

Every item of training + validation gets out-of-fold predicted probabilities from a fast model, cross-validated
inside those items (near duplicates share a fold; the test split never judges a training label). Confident learning
(Northcutt, Jiang & Chuang, JAIR 2021) then estimates how many labels are wrong: a per-class threshold (the mean
probability a class gets on the items labelled with it), the confident joint of given and likely-true labels,
calibrated to the class counts; its off-diagonal share is the noise rate. That many items are flagged ("prune by
noise rate"), the least self-confident first: ranked by the probability of their given label, lowest first, each
with another class more probable. ``data.label_issues: report`` lists them; ``exclude`` also leaves the training
and validation suspects out of fitting, in quarantine with the reason.

Chosen on planted 5% label flips in the train files of the development sets (bench.label_flips; the test files
never read): ranking by self-confidence found more flips among the top K than the confident joint's off-diagonal
ranked by margin on every multi-class set (clinc150 0.69 -> 0.94, gtsrb 0.69 -> 0.91 with the image model below)
and the same on two-class sets, where both orders agree. Images are judged through RBF features of their
thumbnails (Nystroem), not raw pixels: out-of-fold accuracy 0.85 -> 0.91 on notmnist, 0.90 -> 0.97 on the digits.

    >>> audit = audit_labels(joined(train, val))  # doctest: +SKIP
    >>> audit.summary()["flagged"], audit.issues[0].suggested  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.config import DataConfig
from training.data.dataset import Dataset, first_of, joined

log = logging.getLogger(__name__)

METHOD = (
    "confident learning: 5-fold out-of-fold probabilities, the confident joint's noise rate, "
    "that many items ranked by self-confidence"
)
FOLDS = 5
THUMBNAIL = 16  # images are judged on 16x16 thumbnails: fast, and enough to see a label that disagrees
RBF_FEATURES = 1000  # Nystroem components of the image model's RBF kernel
# Below this out-of-fold accuracy the suspects were mostly hard items, not flips, on the label-flip benchmark: on
# four sentence-level sentiment sets and the flower photos (0.49-0.76) only 0.30-0.36 of the top suspects were flips.
WEAK_MODEL = 0.8
HEADER = ("item", "given_label", "suggested_label", "score")


@dataclass(frozen=True)
class LabelIssue:
    """A suspect: the item (as quarantine.csv names it), its index in the audited items, the given and the
    suggested label (the most probable other class), the score 1 - p(given label) (larger: more suspect), and the
    item itself (text, or image path)."""

    item: str
    index: int
    given: str
    suggested: str
    score: float
    content: Any = None


@dataclass
class Audit:
    issues: list[LabelIssue]  # most suspect first
    noise_rate: float  # estimated share of wrong labels (the calibrated confident joint's off-diagonal)
    items: int
    seconds: float
    model: str
    model_accuracy: float = 0.0  # the fast model's out-of-fold accuracy against the given labels
    # Classes with fewer than FOLDS training and validation items, left out (their items kept as labelled)
    classes_not_audited: tuple[str, ...] = ()
    items_not_audited: int = 0

    def summary(self) -> dict[str, Any]:
        """report.json ``data.label_issues``."""
        return {
            "flagged": len(self.issues),
            "estimated_noise_rate": round(self.noise_rate, 4),
            "method": METHOD,
            "model": self.model,
            "model_accuracy": round(self.model_accuracy, 4),
            "items_audited": self.items,
            "items_not_audited": self.items_not_audited,
            "classes_not_audited": list(self.classes_not_audited),
            "seconds": round(self.seconds, 2),
        }

    def caveat(self) -> str | None:
        """Why the suspects may be hard items rather than wrong labels, where the fast model is too weak to
        tell (below WEAK_MODEL out of fold); the log and the data report both say it."""
        if self.model_accuracy >= WEAK_MODEL:
            return None
        return (
            f"its fast model agrees with only {self.model_accuracy:.0%} of the labels out of fold, so most suspects "
            "are likely hard items rather than wrong labels: read label_issues.csv before using "
            "data.label_issues: exclude"
        )

    def write_csv(self, path: Path) -> Path:
        """label_issues.csv: header item,given_label,suggested_label,score; most suspect first."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(HEADER)
            writer.writerows((i.item, i.given, i.suggested, f"{i.score:.4f}") for i in self.issues)
        return path


def audit_labels(items: Dataset, folds: int = FOLDS, seed: int = 0) -> Audit:
    """Confident learning over ``items`` (training + validation)."""
    started = time.perf_counter()
    names = items.label_names
    y = np.array([names.index(label) for label in items.labels])
    model, probs = out_of_fold_probabilities(items, y, len(names), folds, seed)
    suspects, noise_rate = confident_learning(probs, y)
    issues = [
        LabelIssue(items.name(i), i, names[y[i]], names[likely], score, items.inputs[i])
        for i, likely, score in suspects
    ]
    accuracy = float(np.mean(probs.argmax(axis=1) == y))
    audit = Audit(issues, noise_rate, len(items), time.perf_counter() - started, model, accuracy)
    log.info(
        "label audit: %d of %d training and validation labels look wrong (estimated noise rate %.1f%%, %.1fs)",
        len(issues),
        len(items),
        100 * noise_rate,
        audit.seconds,
    )
    if caveat := audit.caveat():
        log.warning("label audit: %s", caveat)
    return audit


def out_of_fold_probabilities(
    items: Dataset, y: np.ndarray, classes: int, folds: int, seed: int
) -> tuple[str, np.ndarray]:
    """(the model's description, (N, classes) probabilities, each from a model that did not see the item)."""
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict

    smallest = int(np.bincount(y, minlength=classes).min())
    k = max(2, min(folds, smallest))
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    described, model, features = _fast_model(items, seed)
    probs = cross_val_predict(model, features, y, groups=items.groups, cv=cv, method="predict_proba")
    return described, np.asarray(probs, dtype=np.float64)


def _fast_model(items: Dataset, seed: int = 0) -> tuple[str, Any, Any]:
    """A quick, well-calibrated-enough classifier and its input for the task."""
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if items.task == "text":
        from sklearn.feature_extraction.text import TfidfVectorizer

        tfidf = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2, max_features=200_000)
        model = make_pipeline(tfidf, LogisticRegression(C=10, max_iter=1000))
        return "TF-IDF words 1-2 + logistic regression", model, list(items.inputs)
    pixels = _thumbnails(items)
    components = min(RBF_FEATURES, len(pixels) * (FOLDS - 1) // FOLDS)  # no more than a fold's training items
    rbf = Nystroem(gamma=1.0 / pixels.shape[1], n_components=components, random_state=seed)
    return (
        f"{THUMBNAIL}x{THUMBNAIL} pixels, RBF features (Nystroem, {components:,}) + logistic regression",
        make_pipeline(StandardScaler(), rbf, LogisticRegression(C=10.0, max_iter=2000)),
        pixels,
    )


def _thumbnails(items: Dataset) -> np.ndarray:
    from serving.preprocess import ImageSpec, preprocess_image_bytes

    spec = ImageSpec(labels=(), height=THUMBNAIL, width=THUMBNAIL, channels=3 if items.colour else 1)
    return np.stack([preprocess_image_bytes(Path(p).read_bytes(), spec).ravel() for p in items.inputs])


def confident_learning(probs: np.ndarray, y: np.ndarray) -> tuple[list[tuple[int, int, float]], float]:
    """The suspects as (item, suggested label, 1 - p(given label)), most suspect first, and the estimated noise
    rate: as many suspects as the noise rate says are wrong, the lowest p(given) first, each with another class
    more probable than its given one."""
    n, classes = probs.shape
    counts = np.bincount(y, minlength=classes)
    # A class's threshold: the mean probability the model gives it on the items labelled with it.
    thresholds = np.array([probs[y == j, j].mean() if counts[j] else 1.0 for j in range(classes)])
    confident = probs >= thresholds[None, :] - 1e-12
    has = confident.any(axis=1)
    likely = np.where(confident, probs, -1.0).argmax(axis=1)  # the most probable class above its threshold
    joint = np.zeros((classes, classes))
    np.add.at(joint, (y[has], likely[has]), 1)
    # Calibrated so each row sums to its class's count: the noise rate estimate does not depend on how many
    # items cleared a threshold at all.
    rows = joint.sum(axis=1, keepdims=True)
    calibrated = np.divide(joint * counts[:, None], rows, out=np.zeros_like(joint), where=rows > 0)
    total = calibrated.sum()
    noise_rate = float((total - np.trace(calibrated)) / total) if total else 0.0
    given = probs[np.arange(n), y]
    others = probs.copy()
    others[np.arange(n), y] = -1.0
    suggested = others.argmax(axis=1)
    doubted = np.flatnonzero(others.max(axis=1) > given)  # another class is more probable than the given one
    ranked = doubted[np.argsort(given[doubted], kind="stable")][: round(noise_rate * n)]
    return [(int(i), int(suggested[i]), float(1.0 - given[i])) for i in ranked], noise_rate


def _not_auditable(items: Dataset) -> str | None:
    """Why cross-validation cannot judge these labels (the data check stops such a run with its own message)."""
    if len(set(items.labels)) < 2:
        return f"fewer than two classes with {FOLDS} or more training and validation items"
    if len(set(items.groups)) < FOLDS:
        return f"fewer than {FOLDS} distinct items"
    return None


def auditable_items(items: Dataset) -> tuple[list[int], tuple[str, ...]]:
    """The items cross-validation can judge, those of classes with at least FOLDS of them (a smaller class would
    lack training items in some fold, or cut every class to fewer folds), and the classes left out."""
    counts = Counter(items.labels)
    small = tuple(sorted(label for label, n in counts.items() if n < FOLDS))
    return [i for i, label in enumerate(items.labels) if counts[label] >= FOLDS], small


def audit_and_exclude(
    dataset: Dataset, train: Dataset, val: Dataset, cfg: DataConfig
) -> tuple[Audit | None, Dataset, Dataset]:
    """The audit of training + validation (None when ``data.label_issues`` is ``off``) and the splits to fit on:
    as they are, or with the suspects left out (``exclude``; each listed in quarantine with the reason)."""
    if cfg.label_issues == "off":
        return None, train, val
    everything = joined(train, val)
    judged, small = auditable_items(everything)
    items = everything.subset(judged)
    why_not = _not_auditable(items)
    if why_not:
        log.info("label audit skipped: %s", why_not)
        return None, train, val
    if small:
        log.info(
            "label audit: %d class(es) with fewer than %d training and validation items are not audited (%s)",
            len(small),
            FOLDS,
            first_of(small, 10),
        )
    audit = audit_labels(items, seed=cfg.seed)
    audit.classes_not_audited, audit.items_not_audited = small, len(everything) - len(judged)
    if cfg.label_issues != "exclude" or not audit.issues:
        return audit, train, val
    dropped = {judged[issue.index] for issue in audit.issues}
    for issue in audit.issues:
        dataset.report.exclude_label_issue(
            issue.item,
            issue.given,
            f"label {issue.given!r} looks wrong: {issue.suggested!r} is likelier "
            f"(p(given label) {1 - issue.score:.2f} out of fold, label audit)",
        )
    keep_train = [i for i in range(len(train)) if i not in dropped]
    keep_val = [i for i in range(len(val)) if i + len(train) not in dropped]
    log.info("label audit: %d suspects left out of training and validation", len(dropped))
    return audit, train.subset(keep_train), val.subset(keep_val)
