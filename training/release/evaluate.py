"""Classification metrics from probabilities (numpy + scikit-learn, no TensorFlow).

>>> import numpy as np
>>> metrics(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 0]))["accuracy"]
0.5
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support


def metrics(probabilities: np.ndarray, y_true: np.ndarray) -> dict[str, Any]:
    """Accuracy and macro-F1 over the classes present in ``y_true``. Unknown labels (-1) count as misses."""
    y_pred = np.argmax(probabilities, axis=1)
    present = sorted(int(c) for c in set(y_true.tolist()) if c >= 0)
    return {
        "accuracy": round(float(np.mean(y_pred == y_true)), 6) if len(y_true) else 0.0,
        "macro_f1": round(float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)), 6),
        "examples": int(len(y_true)),
    }


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of rows where two models pick the same top-1 class."""
    return round(float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1))), 6)


def per_class(probabilities: np.ndarray, y_true: np.ndarray, labels: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Precision, recall, F1 and support of every class, by label name."""
    y_pred = np.argmax(probabilities, axis=1)
    p, r, f, n = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(len(labels))), average=None, zero_division=0
    )
    return {
        label: {
            "precision": round(float(p[i]), 4),
            "recall": round(float(r[i]), 4),
            "f1": round(float(f[i]), 4),
            "support": int(n[i]),
        }
        for i, label in enumerate(labels)
    }


def confusion(probabilities: np.ndarray, y_true: np.ndarray, classes: int) -> np.ndarray:
    """Counts of (true class row, predicted class column); unknown labels (-1) are left out."""
    known = y_true >= 0
    return confusion_matrix(y_true[known], np.argmax(probabilities[known], axis=1), labels=list(range(classes)))
