"""What every benchmark shares: summaries of repeated measurements, interleaved rounds, the machine.

spread(values)       median, min and max of a measurement repeated over rounds
percentiles(values)  p50 / p95 / p99 (nearest rank) and the count, of latencies
interleaved(...)     variants taking turns, A B C A B C ..., a window each per round
machine()            CPU, cores, Python, torch, torch threads and the load average now
"""

import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

Window = Callable[[], tuple[float, float]]  # one measuring window: (units done, seconds taken)


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def percentiles(values: list[float], qs: tuple[int, ...] = (50, 95, 99)) -> dict:
    """Nearest-rank percentiles: p99 of 100 values is the 99th smallest. Empty: NaNs, n 0."""
    ordered = sorted(values)
    out: dict = {"n": len(ordered)}
    for q in qs:
        out[f"p{q}"] = ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)] if ordered else math.nan
    out["max"] = ordered[-1] if ordered else math.nan
    return out


def interleaved(variants: dict[str, Window], rounds: int, warmup_rounds: int = 1, log=print) -> dict[str, list[float]]:
    """Each variant's rate (units / second) in every round; the variants take turns within a round
    (the machine's speed drifts, so no variant gets all the quiet minutes). Warm-up rounds are dropped."""
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(warmup_rounds + rounds):
        for name, window in variants.items():
            units, seconds = window()
            if round_ >= warmup_rounds:
                rates[name].append(units / seconds)
        if round_ >= warmup_rounds:
            log(
                f"  round {round_ + 1 - warmup_rounds}/{rounds}: "
                + ", ".join(f"{n} {r[-1]:.0f}/s" for n, r in rates.items())
            )
    return rates


def ratios(values: list[float], reference: list[float]) -> dict:
    """The ratio of two variants measured in the same rounds, round by round: its spread."""
    return spread([v / r for v, r in zip(values, reference)])


def cpu_model() -> str:
    try:
        return next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine() -> dict:
    import torch

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
