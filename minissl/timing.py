"""Timing: how minissl measures speed (DESIGN.md, Timing).

Same process, same input, warm-up calls first, then the median of repeated runs.
Absolute times on shared machines are noisy; ratios measured in one run are what count,
so benchmarks time the things they compare side by side with these helpers.
"""

import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the median and the fastest of `repeats` timed calls."""

    median: float
    best: float
    repeats: int


def measure(function, repeats=20, warmup=3, min_seconds=0.0):
    """Call `function()` `warmup` times untimed, then time `repeats` calls one by one.

    With `min_seconds` > 0, keeps timing past `repeats` until that much time has been
    spent, so that very short calls get enough samples. Returns a Timing.
    Raises ValueError unless repeats >= 1 and warmup >= 0.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"measure needs repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    for _ in range(warmup):
        function()
    samples = []
    spent = 0.0
    while len(samples) < repeats or spent < min_seconds:
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
        spent += samples[-1]
    return Timing(median=float(np.median(samples)), best=float(np.min(samples)),
                  repeats=len(samples))
