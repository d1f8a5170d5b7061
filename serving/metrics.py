"""Kiln's Prometheus metrics, exported on BentoML's /metrics next to its own (bentoml.metrics wraps
prometheus_client per worker process).

- kiln_predictions_total{task,label,version}: one per item classified, by predicted label ("(abstained)" for an
  answer below the task's KILN_MIN_CONFIDENCE).
- kiln_model_info{task,version,variant}: 1 for the version each task serves now, 0 for one it replaced.
- kiln_model_reloads_total{task,result}: hot reloads, result "success" or "failure".
- kiln_model_stale{task}: 1 while the version served differs from the production pointer (a load failing; it is
  retried with backoff), else 0; kiln_model_stale_since_seconds{task}: when that began (Unix time), 0 when not.
- kiln_inference_seconds{task}: the ONNX Runtime call alone (no HTTP, no decoding).
- kiln_request_bytes{task}: the payload classified (image file bytes; UTF-8 bytes of the texts).
- Drift signals per item, each a histogram by task and version in serving.drift's buckets: kiln_top_score (both
  tasks); kiln_input_image_bytes and kiln_input_brightness (images); kiln_input_text_chars and
  kiln_input_unknown_share (texts).
- kiln_drift_psi{task,version,signal}: the population stability index of what this server has seen since it loaded
  the version against the version's training summary (drift.json); set once MIN_ITEMS items were seen.
"""

from __future__ import annotations

import functools
from typing import Any

import bentoml

from serving.drift import EDGES, Counted


@functools.lru_cache(maxsize=4096)
def child(metric: Any, **labels: str) -> Any:
    """``metric.labels(**labels)``, looked up once per label set: prometheus_client validates the names and takes
    a lock on every labels() call, and six a request cost about 36 us of a one-text answer. The set of label
    values is bounded (tasks x versions x classes), as Prometheus keeps every child anyway. A child got here must
    never be removed from its metric (Kiln sets a retired version's series to 0 instead): the cache would keep
    handing out the removed one."""
    return metric.labels(**labels)


def observe_counted(histogram: Any, counted: Counted) -> None:
    """Add one request's counted values (serving.drift.count_request) to a histogram child: the series that one
    observe() per value gives (prometheus_client keeps a histogram's buckets non-cumulative and adds them up when
    scraped), at one increment per non-empty bucket; 32 texts took about 100 observe() calls, 8% of the
    request. One deliberate difference: a NaN counts in the +Inf bucket and stays out of the sum, as in
    drift.json, where observe() would count it nowhere and make the sum NaN for good. It reaches into the
    child's bucket and sum values (prometheus_client has no bulk observe; pyproject pins its minor version);
    tests/serving/test_drift_math.py checks it against observe()."""
    for index, items in counted.buckets.items():
        histogram._buckets[index].inc(items)
    histogram._sum.inc(counted.total)


ABSTAINED = "(abstained)"  # kiln_predictions_total's label for an answer that abstained

PREDICTIONS = bentoml.metrics.Counter(
    name="kiln_predictions",
    documentation="Items classified, by task, predicted label and model version",
    labelnames=["task", "label", "version"],
)
MODEL_INFO = bentoml.metrics.Gauge(
    name="kiln_model_info",
    documentation="1 for the model version and variant each task serves now",
    labelnames=["task", "version", "variant"],
    multiprocess_mode="livemax",  # one series per version across workers, no pid label
)
RELOADS = bentoml.metrics.Counter(
    name="kiln_model_reloads",
    documentation="Hot reloads of a task's production model, by result (success or failure)",
    labelnames=["task", "result"],
)
INFERENCE_SECONDS = bentoml.metrics.Histogram(
    name="kiln_inference_seconds",
    documentation="ONNX Runtime inference time per request (model only; requests answered together share one run)",
    labelnames=["task"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
REQUEST_BYTES = bentoml.metrics.Histogram(
    name="kiln_request_bytes",
    documentation="Bytes of payload classified per request",
    labelnames=["task"],
    buckets=(256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216),
)
STALE = bentoml.metrics.Gauge(
    name="kiln_model_stale",
    documentation="1 while the version a task serves differs from its production pointer (its load is retried)",
    labelnames=["task"],
    multiprocess_mode="livemax",
)
STALE_SINCE = bentoml.metrics.Gauge(
    name="kiln_model_stale_since_seconds",
    documentation="Unix time since which the served version differs from the production pointer; 0 when it does not",
    labelnames=["task"],
    multiprocess_mode="livemax",
)


def _signal(name: str, signal: str, documentation: str) -> bentoml.metrics.Histogram:
    return bentoml.metrics.Histogram(
        name=name, documentation=documentation, labelnames=["task", "version"], buckets=EDGES[signal]
    )


# One histogram per drift signal (serving.drift.SIGNALS), by the signal's name.
SIGNAL_HISTOGRAMS = {
    "score": _signal("kiln_top_score", "score", "Top-1 score of each item classified"),
    "image_bytes": _signal("kiln_input_image_bytes", "image_bytes", "File size of each image classified"),
    "brightness": _signal("kiln_input_brightness", "brightness", "Mean of each image's model input, in [0, 1]"),
    "text_chars": _signal("kiln_input_text_chars", "text_chars", "Characters of each text classified"),
    "unknown_share": _signal(
        "kiln_input_unknown_share", "unknown_share", "Share of each text's words read that the vocabulary lacks"
    ),
}
DRIFT_PSI = bentoml.metrics.Gauge(
    name="kiln_drift_psi",
    documentation="Population stability index of a signal seen since the version loaded vs its training summary",
    labelnames=["task", "version", "signal"],
    multiprocess_mode="livemax",
)
