"""Peak memory per stage, and memory going back to the system after it."""

from __future__ import annotations

import ctypes.util
import os
import subprocess
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


_ROUNDS = """
import sys
import numpy as np, psutil
from training import memory
if sys.argv[1] == "tuned":
    assert memory.tune_allocator()
rss = lambda: psutil.Process().memory_info().rss
start = rss()
for _ in range(3):  # glibc's own rule serves the second and third from the heap and keeps them
    block = np.ones(16 * 2**20 // 8)
    del block
print((rss() - start) / 2**20)
"""


def _kept_mib(mode: str) -> float:
    """MiB still resident after three 16 MiB blocks came and went, in a fresh process (no other threads)."""
    done = subprocess.run([sys.executable, "-c", _ROUNDS, mode], capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


@glibc_only
@pytest.mark.skipif(
    any(k.startswith("MALLOC_") for k in os.environ) or "LD_PRELOAD" in os.environ,
    reason="glibc's default malloc behaviour is the control",
)
def test_large_blocks_go_back_to_the_system_once_the_allocator_is_tuned() -> None:
    assert _kept_mib("default") >= 12  # what the settings are for
    assert _kept_mib("tuned") <= 4
