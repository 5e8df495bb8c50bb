"""How busy the machine is with work that is not the benchmark's: CPU used by every process outside
this process's tree (the servers, workers, browsers and Ray processes it starts are inside it).

    with OtherLoad() as other:   # samples every `every` seconds on a thread
        ...
    other.summary()              # {"mean_cores", "max_cores", "over_half_core", "samples", "every"}: others' CPU

Each sample is the machine's busy CPU time (psutil.cpu_times: all but idle and iowait) over the
interval minus the CPU time this tree's processes used in it; a process of the tree that ends
between two samples takes its last interval with it, so "others" is an upper bound.
"""

import os
import threading
import time

import psutil


def _busy_s() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


def _tree_cpu(seen: dict[int, float]) -> float:
    """CPU seconds this tree used since the last call (a new process: all it used since it began)."""
    me = psutil.Process(os.getpid())
    used = 0.0
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total = times.user + times.system  # not children_*: a reaped child was counted while it lived
        used += total - seen.get(process.pid, 0.0)
        seen[process.pid] = total
    return used


class OtherLoad:
    def __init__(self, every: float = 2.0):
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="other-load", daemon=True)

    def _loop(self) -> None:
        seen: dict[int, float] = {}
        _tree_cpu(seen)
        busy, at = _busy_s(), time.monotonic()
        while not self._stop.wait(self.every):
            ours = _tree_cpu(seen)
            now_busy, now = _busy_s(), time.monotonic()
            self.samples.append(max(0.0, (now_busy - busy - ours) / (now - at)))
            busy, at = now_busy, now

    def summary(self) -> dict:
        samples = list(self.samples)
        return {
            "mean_cores": sum(samples) / len(samples) if samples else 0.0,
            "max_cores": max(samples, default=0.0),
            "over_half_core": sum(s > 0.5 for s in samples) / len(samples) if samples else 0.0,
            "samples": len(samples),
            "every": self.every,
        }

    def __enter__(self) -> "OtherLoad":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
