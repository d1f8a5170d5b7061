"""Peak resident memory per stage of a run, for report.json's ``resources`` section.

Each Prefect step runs inside ``metered(name)``: a sampler thread reads the process's resident set every
``INTERVAL`` seconds while the stage runs and keeps the largest value. A stage's peak is what the process held at
its worst during that stage (everything loaded before it included), so the largest stage peak is the run's.
Compression nests one ``metered("compress/<variant>")`` per variant inside its stage. When a block ends,
``give_back`` returns what it freed to the operating system, so one stage's peak does not carry into the next.

    >>> with metered("train"):  # doctest: +SKIP
    ...     train_model(...)
    >>> stage_peaks()  # doctest: +SKIP
    {'train': 812.4}
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import threading
from collections.abc import Iterator
from typing import Any

import psutil

INTERVAL = 0.1  # seconds between samples: a spike shorter than this can be missed
_PEAKS: dict[str, float] = {}  # MiB per stage name, in the order stages ended
_LOCK = threading.Lock()


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


@contextlib.contextmanager
def metered(stage: str) -> Iterator[None]:
    """Record the peak resident memory of the process while the block runs, as stage ``stage``; a stage that
    runs again (a retried step) keeps the larger peak."""
    peak = [_rss()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(INTERVAL):
            peak[0] = max(peak[0], _rss())

    sampler = threading.Thread(target=sample, name=f"kiln-memory-{stage}", daemon=True)
    sampler.start()
    try:
        yield
    finally:
        done.set()
        sampler.join()
        mib = round(max(peak[0], _rss()) / 2**20, 1)
        with _LOCK:
            _PEAKS[stage] = max(mib, _PEAKS.get(stage, 0.0))
        give_back()  # what the stage freed goes back before the next stage starts


def _malloc_trim() -> Any:
    """glibc's malloc_trim, or None where the C library has none (macOS, musl, Windows)."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return trim


_MALLOC_TRIM = _malloc_trim()


def give_back() -> None:
    """Collect garbage and hand the freed heap back to the operating system. glibc keeps freed memory in its
    arenas: after a tf2onnx export or an ONNX Runtime session, 0.3-0.4 GiB stayed resident per variant and
    the next one piled on top. ``malloc_trim`` releases it (glibc only; elsewhere only the collection runs)."""
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def reset() -> None:
    """Forget earlier stages: a new run in this process starts counting."""
    with _LOCK:
        _PEAKS.clear()


def stage_peaks() -> dict[str, float]:
    with _LOCK:
        return dict(_PEAKS)


def resources() -> dict[str, Any]:
    """report.json's ``resources``: peak resident MiB per stage so far and the largest of them."""
    peaks = stage_peaks()
    return {"peak_rss_mib": peaks, "run_peak_rss_mib": max(peaks.values(), default=0.0)}
