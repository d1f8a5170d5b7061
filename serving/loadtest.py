"""A bounded HTTP load generator for benchmarks: N requests at concurrency C, latency percentiles.

Only ever aimed at a server this process started on localhost.

    >>> stats = run_load(lambda c: c.get(url + "/livez"), concurrency=4, requests=100)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np


def run_load(
    send: Callable[[httpx.Client], httpx.Response],
    concurrency: int,
    requests: int,
    timeout: float = 30.0,
    duration: float | None = None,
) -> dict[str, Any]:
    """Send ``requests`` requests from ``concurrency`` threads (closed loop: each sends its next request when
    the last one answered), or keep sending for ``duration`` seconds; report throughput and latency."""
    per_worker = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]
    deadline = time.perf_counter() + duration if duration else None

    def worker(n: int) -> tuple[list[float], int]:
        times: list[float] = []
        errors = 0
        with httpx.Client(timeout=timeout) as client:
            while (len(times) < n) if deadline is None else (time.perf_counter() < deadline):
                started = time.perf_counter()
                response = send(client)
                times.append((time.perf_counter() - started) * 1000)
                errors += response.status_code != 200
        return times, errors

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(worker, per_worker))
    elapsed = time.perf_counter() - started
    times = np.array([t for ts, _ in results for t in ts])
    return {
        "concurrency": concurrency,
        "requests": int(len(times)),
        "errors": int(sum(e for _, e in results)),
        "requests_per_s": round(len(times) / elapsed, 1),
        "latency_ms_p50": round(float(np.percentile(times, 50)), 2),
        "latency_ms_p95": round(float(np.percentile(times, 95)), 2),
        "latency_ms_p99": round(float(np.percentile(times, 99)), 2),
    }
