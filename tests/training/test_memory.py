"""Peak memory per stage, and memory going back to the system after it."""

from __future__ import annotations

import ctypes.util
import sys
import time

import numpy as np
import psutil
import pytest

from training import memory

MIB = 2**20
glibc_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or ctypes.util.find_library("c") != "libc.so.6", reason="glibc's malloc"
)


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


def test_a_stage_records_the_peak_of_what_it_held() -> None:
    memory.reset()
    with memory.metered("held"):
        block = np.ones(96 * MIB // 8)  # touched, so resident
        before_free = _rss()
        time.sleep(3 * memory.INTERVAL)  # the sampler reads the resident set every INTERVAL seconds
        del block
    peaks = memory.stage_peaks()
    assert peaks["held"] * MIB >= before_free - 8 * MIB
    assert memory.resources()["run_peak_rss_mib"] == max(peaks.values())
    memory.reset()
    assert memory.stage_peaks() == {}


@glibc_only
def test_large_blocks_go_back_to_the_system_once_the_allocator_is_tuned() -> None:
    assert memory.tune_allocator()
    start = _rss()
    for _ in range(3):  # glibc's own rule would serve the second and third from the heap and keep them
        block = np.ones(16 * MIB // 8)
        assert _rss() >= start + 12 * MIB
        del block
    assert _rss() <= start + 8 * MIB
