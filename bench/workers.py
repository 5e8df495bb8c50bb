"""Runs in worker processes: how total training speed scales with runs at once, one run in a worker
against the trainer in-process, stats-event latency and memory with four runs.

    python -m bench --only workers

A real `bnscope serve` with BNSCOPE_MAX_RUNS=4 (bench.server); runs are created over the API, the
default network each, and paused or resumed over the API so that exactly 1, 2 or 4 train at once.
Steps are summed over a window from GET /api/runs (each run's step as of its last scalars event).
The conditions take turns round by round: 1 run, in-process, 2 runs, 4 runs, 4 made, 1 run, ...

  4 made       a second server with the default slots (the machine's cores): 4 runs created, as
               many train as there are slots and the rest wait `queued`: what a user who starts
               4 runs gets (its runs pause while the other conditions are measured)

  in-process   the same trainer in this process, its events down the server's real path on its own
               thread (bench.inprocess): how the server trained before runs had worker processes;
               every served run is paused meanwhile

Afterwards, with all four training, an SSE client on each run for the stats events' publish -> client
latency, and the resident memory of the server and of each worker (psutil).
"""

import os
import time

import torch

from bench.common import percentiles, ratios, spread
from bench.inprocess import TrainerWindows
from bench.latency import stream_latencies
from bench.server import BenchServer
from bnscope.config import RunConfig
from bnscope.train.data import make_splits, read_names

COUNTS = (1, 2, 4)
MADE = 4  # runs created on the server with the default slots


class DefaultSlots:
    """MADE runs created in a `bnscope serve` with its default slots: `training` train, the others
    wait queued. Between windows the training ones pause (keeping their slots)."""

    def __init__(self):
        self.server = BenchServer()
        try:
            self.ids = [self.server.create()["id"] for _ in range(MADE)]
            slots = min(MADE, os.cpu_count() or 1)  # Settings.max_runs's default
            deadline = time.monotonic() + 120
            while len(self.training_now()) < slots:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(self.training_now())} of {slots} runs training after 120 s")
                time.sleep(0.05)
            self.training = self.training_now()
            self.queued = sum(run["status"] == "queued" for run in self.server.runs())
            for run_id in self.training:
                self.server.pause(run_id)
        except BaseException:
            self.server.close()
            raise

    def training_now(self) -> list[int]:
        return [run["id"] for run in self.server.runs() if run["status"] == "running"]

    def rate(self, window: float, settle: float) -> tuple[float, float]:
        for run_id in self.training:
            self.server.resume(run_id)
            self.server.wait_for(run_id, "running")
        time.sleep(settle)
        try:
            return self.server.rate(self.ids, window)
        finally:
            for run_id in self.training:
                self.server.pause(run_id)

    def close(self) -> None:
        self.server.close()


def measure(quick: bool, server: BenchServer, log=print) -> dict:
    torch.set_num_threads(1)
    window, rounds, settle = (1.0, 1, 0.3) if quick else (10.0, 4, 1.0)
    config = RunConfig()
    server.train_only(0)
    inprocess = TrainerWindows(config, make_splits(read_names(), config.block_size))
    made = DefaultSlots()
    rates: dict[str, list[float]] = {**{str(k): [] for k in COUNTS}, "in-process": [], "made": []}
    try:
        for round_ in range(rounds):
            for condition in ("1", "in-process", "2", "4", "made"):
                if condition == "in-process":
                    server.train_only(0)
                    steps, seconds = inprocess.run_for(window)
                elif condition == "made":
                    server.train_only(0)
                    steps, seconds = made.rate(window, settle)
                else:
                    ids = server.train_only(int(condition))
                    time.sleep(settle)  # resumed workers past their first steps
                    steps, seconds = server.rate(ids, window)
                rates[condition].append(steps / seconds)
            log(f"  round {round_ + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.0f} steps/s" for k, v in rates.items()))
    finally:
        inprocess.close()
        made.close()
    ids = server.train_only(4)
    time.sleep(settle)
    memory = server.rss()
    stats = stream_latencies(server, ids, 1.0 if quick else 20.0)["stats"]
    server.train_only(0)
    return {
        "window_s": window,
        "rounds": rounds,
        "steps_per_s": {k: spread(v) for k, v in rates.items()},
        "scaling": {k: ratios(rates[str(k)], rates["1"]) for k in COUNTS[1:]},
        "made": {
            "runs": MADE,
            "training": len(made.training),
            "queued": made.queued,
            "vs_1": ratios(rates["made"], rates["1"]),
        },
        "worker_vs_inprocess": ratios(rates["1"], rates["in-process"]),
        "stats_latency_ms_4_runs": percentiles([s * 1e3 for s in stats]),
        "rss_4_runs": memory,
    }
