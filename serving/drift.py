"""Drift signals: what a server sees per classified item, in the same fixed buckets as the summary training
stores with every version (``drift.json``), and how far apart the two are (population stability index).

Signals: the top-1 score (both tasks); images, the file size in bytes and the mean brightness of the model's
input; texts, the length in characters and the share of the words the model reads that are not in its
vocabulary. The server exports each as a Prometheus histogram per task and version (serving.metrics), counts
them itself too, and publishes the PSI against the version's training summary as ``kiln_drift_psi``; `kiln
drift` computes the same from a /metrics scrape.

>>> import numpy as np
>>> counts = bucket_counts("score", np.array([0.3, 0.95, 0.97, 1.0]))
>>> sum(counts), psi(counts, counts)
(4, 0.0)
"""

from __future__ import annotations

import bisect
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.preprocess import TextSpec

# Fixed upper bucket bounds (Prometheus ``le``); values above the last fall in a final +Inf bucket.
EDGES: dict[str, tuple[float, ...]] = {
    "score": (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999),
    "image_bytes": (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304),
    "brightness": tuple(round(0.1 * i, 1) for i in range(1, 10)),
    "text_chars": (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 16384),
    "unknown_share": (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75),
}
SIGNALS: dict[str, tuple[str, ...]] = {
    "image": ("score", "image_bytes", "brightness"),
    "text": ("score", "text_chars", "unknown_share"),
}
BASELINE = "drift.json"  # in a version directory: the training summary, hashed like every stored file
MIN_ITEMS = 200  # fewer observed items than this give no verdict: the PSI of a handful is noise
STABLE, SHIFTING = 0.1, 0.25  # the usual PSI reading: < 0.1 stable, < 0.25 shifting, else drifted


def bucket_counts(signal: str, values: np.ndarray) -> list[int]:
    """How many of ``values`` fall in each of the signal's buckets (v <= le, as Prometheus counts)."""
    edges = EDGES[signal]
    which = np.searchsorted(np.asarray(edges), np.asarray(values, dtype=np.float64), side="left")
    return np.bincount(which, minlength=len(edges) + 1).astype(int).tolist()


@dataclass(frozen=True)
class Counted:
    """One request's values of one signal, counted: items per bucket index (non-empty buckets only, the +Inf
    bucket last, as bucket_counts numbers them) and the sum of the values that are numbers."""

    buckets: dict[int, int]
    total: float


def count_request(values: dict[str, np.ndarray]) -> dict[str, Counted]:
    """Per signal, one request's values counted once, for both the server's own counts (DriftCounts) and its
    Prometheus histograms (serving.metrics.observe_counted). Per value in Python (bisect): a request holds one item
    or a few dozen, where numpy calls per signal cost more than the model's answer. NaN falls after every edge,
    as numpy's searchsorted puts it, and stays out of the sum."""
    counted = {}
    for signal, array in values.items():
        edges = EDGES[signal]
        buckets: dict[int, int] = {}
        total = 0.0
        for value in array.tolist():
            if math.isnan(value):
                index = len(edges)
            else:
                index = bisect.bisect_left(edges, value)
                total += value
            buckets[index] = buckets.get(index, 0) + 1
        counted[signal] = Counted(buckets, total)
    return counted


def psi(expected: list[int] | np.ndarray, actual: list[int] | np.ndarray) -> float:
    """Population stability index of ``actual`` against ``expected`` bucket counts (half an item added to
    every bucket, so an empty one does not make it infinite)."""
    e = np.asarray(expected, dtype=np.float64) + 0.5
    a = np.asarray(actual, dtype=np.float64) + 0.5
    p, q = e / e.sum(), a / a.sum()
    return round(float(np.sum((q - p) * np.log(q / p))), 6)


def verdict(value: float | None) -> str:
    if value is None:
        return "too few items"
    return "stable" if value < STABLE else "shifting" if value < SHIFTING else "drifted"


def same_buckets(baseline: dict[str, Any]) -> bool:
    """Whether a stored training summary was counted in this Kiln's buckets (a version stored by a Kiln with
    other edges cannot be compared)."""
    signals = baseline.get("signals", {})
    return all(s in EDGES and list(v.get("edges", [])) == list(EDGES[s]) for s, v in signals.items())


def image_signals(files: list[bytes] | list[int], batch: np.ndarray) -> dict[str, np.ndarray]:
    """Per image: its file size (bytes, or the sizes themselves) and the mean of its model input in [0, 1]."""
    sizes = [len(f) if isinstance(f, bytes) else f for f in files]
    return {
        "image_bytes": np.asarray(sizes, dtype=np.float64),
        "brightness": batch.reshape(len(batch), -1).mean(axis=1).astype(np.float64),
    }


def text_signals(texts: list[str], batch: np.ndarray, spec: TextSpec) -> dict[str, np.ndarray]:
    """Per text: its length in characters and the share of the words the network reads that are unknown
    ([UNK], id 1) among the words it reads."""
    words = batch[:, : spec.max_length]
    read = (words > 0).sum(axis=1)
    unknown = (words == 1).sum(axis=1)
    return {
        "text_chars": np.array([len(t) for t in texts], dtype=np.float64),
        "unknown_share": np.divide(unknown, read, out=np.zeros(len(words)), where=read > 0),
    }


def summary(task: str, values: dict[str, np.ndarray]) -> dict[str, Any]:
    """The stored form of a task's signals (drift.json): edges and counts per signal."""
    return {
        "task": task,
        "signals": {s: {"edges": list(EDGES[s]), "counts": bucket_counts(s, values[s])} for s in SIGNALS[task]},
    }


def compare(baseline: dict[str, Any], seen: dict[str, list[int]]) -> list[dict[str, Any]]:
    """Per signal of the baseline: items seen, PSI and the verdict; no PSI while either side holds fewer than
    MIN_ITEMS items (a small test split makes a small score summary)."""
    if not same_buckets(baseline):
        raise ValueError("the version's drift.json was counted in other buckets than this Kiln's; retrain to compare")
    rows = []
    for signal, stored in baseline["signals"].items():
        counts = seen.get(signal)
        items = int(sum(counts)) if counts is not None else 0
        summarised = sum(stored["counts"]) >= MIN_ITEMS
        value = psi(stored["counts"], counts) if counts is not None and items >= MIN_ITEMS and summarised else None
        text = verdict(value) if summarised else "training summary too small"
        rows.append({"signal": signal, "items": items, "psi": value, "verdict": text})
    return rows


@dataclass
class DriftCounts:
    """What one served version has seen since it was loaded, per signal, kept by the server (thread-safe)."""

    task: str
    baseline: dict[str, Any] | None
    counts: dict[str, list[int]] = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.counts = {s: [0] * (len(EDGES[s]) + 1) for s in SIGNALS[self.task]}

    def add(self, counted: dict[str, Counted]) -> None:
        """Add one request's counts (count_request) of this task's signals."""
        with self._lock:
            for signal, counts in self.counts.items():
                for index, items in counted[signal].buckets.items():
                    counts[index] += items

    def compare(self) -> list[dict[str, Any]]:
        """compare() against the version's training summary; nothing when the version has none."""
        if self.baseline is None:
            return []
        with self._lock:
            seen = {s: list(c) for s, c in self.counts.items()}
        return compare(self.baseline, seen)


# Histogram names on /metrics per signal (serving.metrics defines them).
METRIC_NAMES = {
    "score": "kiln_top_score",
    "image_bytes": "kiln_input_image_bytes",
    "brightness": "kiln_input_brightness",
    "text_chars": "kiln_input_text_chars",
    "unknown_share": "kiln_input_unknown_share",
}


def served_version(scrape: str, task: str) -> str | None:
    """The version ``task`` serves now according to a /metrics scrape (kiln_model_info at 1)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(scrape):
        if family.name == "kiln_model_info":
            for sample in family.samples:
                if sample.labels.get("task") == task and sample.value >= 1:
                    return sample.labels.get("version")
    return None


def observed_counts(scrape: str, task: str, version: str) -> dict[str, list[int]]:
    """Per signal, the bucket counts a /metrics scrape holds for ``task`` and ``version`` (Prometheus buckets
    are cumulative; these are per bucket). Signals with no samples are left out."""
    from prometheus_client.parser import text_string_to_metric_families

    names = {METRIC_NAMES[s]: s for s in SIGNALS[task]}
    found: dict[str, list[int]] = {}
    for family in text_string_to_metric_families(scrape):
        signal = names.get(family.name)
        if signal is None:
            continue
        cumulative = {
            float(sample.labels["le"]): sample.value
            for sample in family.samples
            if sample.name.endswith("_bucket")
            and sample.labels.get("task") == task
            and sample.labels.get("version") == version
        }
        if not cumulative:
            continue
        bounds = sorted(cumulative)
        if tuple(bounds[:-1]) != tuple(float(e) for e in EDGES[signal]):
            raise ValueError(f"{family.name} has buckets {bounds[:-1]}, not this Kiln's {list(EDGES[signal])}")
        running = [cumulative[b] for b in bounds]
        found[signal] = [int(round(c - p)) for c, p in zip(running, [0.0, *running[:-1]], strict=True)]
    return found
