"""Benchmarks: ``python -m engine.bench NAME [...]`` prints plain ``name: value unit`` lines.

Each benchmark is a module ``engine/bench/<name>.py`` with ``main(argv) -> int``.
Tests run them with small sizes (never timing-dependent assertions)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

# The shared test data beside the repository (fox_cc0.ply, ...), as the benchmarks' defaults.
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """The median wall time in seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
