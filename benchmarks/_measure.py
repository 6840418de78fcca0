"""Wall time and peak memory of a call, for the benchmark scripts.

Peak memory is the largest resident set size (RSS) seen above the RSS at the start of the call,
sampled every 2 ms in a thread from ``/proc/self/statm`` (Linux), so it counts memory from any
allocator (numpy, torch, BLAS), unlike ``tracemalloc``.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident set size of this process in bytes."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except OSError:  # not Linux: fall back to psutil when present
        import psutil

        return psutil.Process().memory_info().rss


@dataclass
class Measurement:
    seconds: float
    peak_bytes: int
    result: Any = None

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / 2**30


def measure(func: Callable[[], Any], *, keep_result: bool = False) -> Measurement:
    """Run ``func`` once; return its wall time and peak RSS above the starting RSS."""
    gc.collect()
    start_rss = rss_bytes()
    peak = start_rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.perf_counter()
    try:
        result = func()
    finally:
        elapsed = time.perf_counter() - began
        done.set()
        sampler.join()
    peak = max(peak, rss_bytes())
    measurement = Measurement(elapsed, peak - start_rss, result if keep_result else None)
    del result
    gc.collect()
    return measurement


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"
