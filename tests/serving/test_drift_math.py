"""Drift signals' buckets, PSI and verdicts (serving.drift), without a server."""

from __future__ import annotations

import numpy as np
import pytest

from serving.drift import EDGES, MIN_ITEMS, bucket_counts, compare, psi, summary


def test_buckets_count_as_prometheus_le_does_and_psi_grows_with_the_shift() -> None:
    assert bucket_counts("score", np.array([0.2, 0.2001, 0.999, 1.0])) == [1, 1] + [0] * 8 + [1, 1]
    rng = np.random.default_rng(0)
    base = bucket_counts("brightness", rng.uniform(0.2, 0.6, 5000))
    same = bucket_counts("brightness", rng.uniform(0.2, 0.6, 5000))
    moved = bucket_counts("brightness", rng.uniform(0.4, 0.8, 5000))
    assert psi(base, same) < 0.01 < 0.25 < psi(base, moved)


def test_no_verdict_from_a_small_training_summary_or_few_items() -> None:
    rng = np.random.default_rng(1)
    values = {"score": rng.uniform(0.5, 1, MIN_ITEMS - 1), "text_chars": rng.uniform(10, 100, 5000)}
    stored = summary("text", values | {"unknown_share": rng.uniform(0, 0.2, 5000)})
    seen = {s: bucket_counts(s, values[s][:150]) for s in ("score", "text_chars")}
    rows = {r["signal"]: r for r in compare(stored, seen)}
    assert rows["score"]["verdict"] == "training summary too small" and rows["score"]["psi"] is None
    assert rows["text_chars"]["verdict"] == "too few items" and rows["unknown_share"]["items"] == 0


def test_a_summary_counted_in_other_buckets_is_refused() -> None:
    stored = summary("image", {s: np.ones(300) for s in ("score", "image_bytes", "brightness")})
    stored["signals"]["brightness"]["edges"] = [0.5]
    with pytest.raises(ValueError, match="other buckets"):
        compare(stored, {})
    assert len(EDGES["score"]) + 1 == len(stored["signals"]["score"]["counts"])


def test_the_servers_running_counts_equal_the_summary_buckets() -> None:
    """DriftCounts counts request by request in Python; the totals are bucket_counts' of all values at once,
    values on an edge, beyond the last one and NaN included."""
    from serving.drift import DriftCounts, count_request

    requests = _text_requests(nan=True)
    counts = DriftCounts("text", None)
    for values in requests:
        counts.add(count_request(values))
    for signal in counts.counts:
        every = np.concatenate([values[signal] for values in requests])
        assert counts.counts[signal] == bucket_counts(signal, every), signal


def _text_requests(nan: bool) -> list[dict[str, np.ndarray]]:
    """Five requests of 1-32 texts' signal values, with values on an edge, beyond the last one and (``nan``)
    NaN."""
    rng = np.random.default_rng(2)
    return [
        {
            "score": np.append(rng.uniform(0, 1, n), [0.2, 0.999, np.nan if nan else 1.0][: n % 4]),
            "text_chars": np.append(rng.uniform(0, 20000, n), [16.0, 16384.0, 99999.0][: n % 4]),
            "unknown_share": np.append(rng.uniform(0, 1, n), [0.0, 0.75, 1.0][: n % 4]),
        }
        for n in (1, 2, 3, 32, 7)
    ]


def test_a_histogram_given_counted_requests_exports_what_observe_per_value_does() -> None:
    """observe_counted writes into prometheus_client's histogram internals; this holds it to what observe() per
    value exports (buckets, count, sum) on the installed prometheus_client."""
    from prometheus_client import CollectorRegistry, Histogram

    from serving.drift import count_request
    from serving.metrics import observe_counted

    requests = _text_requests(nan=False)
    for signal in ("score", "text_chars", "unknown_share"):
        exported = []
        for bulk in (False, True):
            registry = CollectorRegistry()
            histogram = Histogram("kiln_test", "test", buckets=EDGES[signal], registry=registry)
            for values in requests:
                if bulk:
                    observe_counted(histogram, count_request({signal: values[signal]})[signal])
                else:
                    for value in values[signal].tolist():
                        histogram.observe(value)
            samples = [s for m in registry.collect() for s in m.samples if not s.name.endswith("_created")]
            exported.append({s.name + str(s.labels): s.value for s in samples})
        per_value, counted = exported
        assert per_value.keys() == counted.keys() and len(per_value) == len(EDGES[signal]) + 3, signal
        for name, value in per_value.items():
            assert counted[name] == pytest.approx(value, rel=1e-12), (signal, name)


def test_a_nan_is_counted_in_the_top_bucket_and_kept_out_of_the_sum() -> None:
    """Where observe(nan) would count nowhere and turn the sum into NaN for good, a counted NaN lands in +Inf (as
    drift.json counts it) and the sum stays a number."""
    from prometheus_client import CollectorRegistry, Histogram

    from serving.drift import count_request
    from serving.metrics import observe_counted

    registry = CollectorRegistry()
    histogram = Histogram("kiln_nan", "test", buckets=EDGES["score"], registry=registry)
    observe_counted(histogram, count_request({"score": np.array([0.5, np.nan])})["score"])
    samples = {s.name + s.labels.get("le", ""): s.value for m in registry.collect() for s in m.samples}
    assert samples["kiln_nan_count"] == 2 and samples["kiln_nan_sum"] == 0.5
    assert samples["kiln_nan_bucket+Inf"] - samples["kiln_nan_bucket0.999"] == 1


def test_a_metric_child_is_looked_up_once_and_is_the_one_exported() -> None:
    from prometheus_client import generate_latest

    from serving import metrics

    first = metrics.child(metrics.PREDICTIONS, task="text", label="pos", version="v-child-test")
    assert metrics.child(metrics.PREDICTIONS, task="text", label="pos", version="v-child-test") is first
    assert first is metrics.PREDICTIONS.labels(task="text", label="pos", version="v-child-test")
    first.inc()
    assert b'version="v-child-test"' in generate_latest()
