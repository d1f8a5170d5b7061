"""Label-error audit: which training and validation items look mislabelled.

Every item of training + validation gets out-of-fold predicted probabilities from a fast model, cross-validated
inside those items (near duplicates share a fold; the test split never judges a training label). Confident learning
(Northcutt, Jiang & Chuang, JAIR 2021) then finds the suspects: a per-class threshold (the mean probability a class
gets on the items labelled with it), the confident joint of given and likely-true labels, and its off-diagonal, ranked
by normalised margin (the suggested label's probability minus the given label's). ``data.label_issues: report``
lists them; ``exclude`` also leaves the training and validation suspects out of fitting, in quarantine with the
reason.

    >>> audit = audit_labels(joined(train, val))  # doctest: +SKIP
    >>> audit.summary()["flagged"], audit.issues[0].suggested  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.config import DataConfig
from training.data.dataset import Dataset, joined

log = logging.getLogger(__name__)

METHOD = "confident learning: 5-fold out-of-fold probabilities, off-diagonal of the confident joint, normalised margin"
FOLDS = 5
THUMBNAIL = 16  # images are judged on 16x16 thumbnails: fast, and enough to see a label that disagrees
HEADER = ("item", "given_label", "suggested_label", "score")


@dataclass(frozen=True)
class LabelIssue:
    """A suspect: the item (as quarantine.csv names it), its index in the audited items, the given and the
    suggested label, the normalised margin (larger: more suspect), and the item itself (text, or image path)."""

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

    def summary(self) -> dict[str, Any]:
        """report.json ``data.label_issues``."""
        return {
            "flagged": len(self.issues),
            "estimated_noise_rate": round(self.noise_rate, 4),
            "method": METHOD,
            "model": self.model,
            "items_audited": self.items,
            "seconds": round(self.seconds, 2),
        }

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
        LabelIssue(items.name(i), i, names[y[i]], names[likely], margin, items.inputs[i])
        for i, likely, margin in suspects
    ]
    audit = Audit(issues, noise_rate, len(items), time.perf_counter() - started, model)
    log.info(
        "label audit: %d of %d training and validation labels look wrong (estimated noise rate %.1f%%, %.1fs)",
        len(issues),
        len(items),
        100 * noise_rate,
        audit.seconds,
    )
    return audit


def out_of_fold_probabilities(
    items: Dataset, y: np.ndarray, classes: int, folds: int, seed: int
) -> tuple[str, np.ndarray]:
    """(the model's description, (N, classes) probabilities, each from a model that did not see the item)."""
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict

    smallest = int(np.bincount(y, minlength=classes).min())
    k = max(2, min(folds, smallest))
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    described, model, features = _fast_model(items)
    probs = cross_val_predict(model, features, y, groups=items.groups, cv=cv, method="predict_proba")
    return described, np.asarray(probs, dtype=np.float64)


def _fast_model(items: Dataset) -> tuple[str, Any, Any]:
    """A quick, well-calibrated-enough classifier and its input for the task."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if items.task == "text":
        from sklearn.feature_extraction.text import TfidfVectorizer

        tfidf = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2, max_features=200_000)
        model = make_pipeline(tfidf, LogisticRegression(C=10, max_iter=1000))
        return "TF-IDF words 1-2 + logistic regression", model, list(items.inputs)
    return (
        f"{THUMBNAIL}x{THUMBNAIL} pixels + logistic regression",
        make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)),
        _thumbnails(items),
    )


def _thumbnails(items: Dataset) -> np.ndarray:
    from serving.preprocess import ImageSpec, preprocess_image_bytes

    spec = ImageSpec(labels=(), height=THUMBNAIL, width=THUMBNAIL, channels=3 if items.colour else 1)
    return np.stack([preprocess_image_bytes(Path(p).read_bytes(), spec).ravel() for p in items.inputs])


def confident_learning(probs: np.ndarray, y: np.ndarray) -> tuple[list[tuple[int, int, float]], float]:
    """The off-diagonal of the confident joint as (item, likely label, normalised margin), most suspect first,
    and the estimated noise rate."""
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
    flagged = np.flatnonzero(has & (likely != y))
    margins = probs[flagged, likely[flagged]] - probs[flagged, y[flagged]]
    order = np.argsort(-margins, kind="stable")
    return [(int(flagged[i]), int(likely[flagged[i]]), float(margins[i])) for i in order], noise_rate


def _not_auditable(items: Dataset) -> str | None:
    """Why cross-validation cannot judge these labels (the data check stops such a run with its own message)."""
    counts = np.bincount(np.unique(items.labels, return_inverse=True)[1]) if items.labels else np.array([])
    if len(counts) < 2:
        return "fewer than two classes"
    if counts.min() < 2:
        return "a class has fewer than two training and validation items"
    if len(set(items.groups)) < FOLDS:
        return f"fewer than {FOLDS} distinct items"
    return None


def audit_and_exclude(
    dataset: Dataset, train: Dataset, val: Dataset, cfg: DataConfig
) -> tuple[Audit | None, Dataset, Dataset]:
    """The audit of training + validation (None when ``data.label_issues`` is ``off``) and the splits to fit on:
    as they are, or with the suspects left out (``exclude``; each listed in quarantine with the reason)."""
    if cfg.label_issues == "off":
        return None, train, val
    items = joined(train, val)
    why_not = _not_auditable(items)
    if why_not:
        log.info("label audit skipped: %s", why_not)
        return None, train, val
    audit = audit_labels(items, seed=cfg.seed)
    if cfg.label_issues != "exclude" or not audit.issues:
        return audit, train, val
    dropped = {issue.index for issue in audit.issues}
    for issue in audit.issues:
        dataset.report.exclude_label_issue(
            issue.item,
            issue.given,
            f"label {issue.given!r} looks wrong: {issue.suggested!r} is likely "
            f"(normalised margin {issue.score:.2f}, label audit)",
        )
    keep_train = [i for i in range(len(train)) if i not in dropped]
    keep_val = [i for i in range(len(val)) if i + len(train) not in dropped]
    log.info("label audit: %d suspects left out of training and validation", len(dropped))
    return audit, train.subset(keep_train), val.subset(keep_val)
