"""Runs in worker processes: how total training speed scales with runs at once, one run in a worker
against the trainer in-process, stats-event latency and memory with four runs.

    python -m bench --only workers

A real `bnscope serve` with BNSCOPE_MAX_RUNS=4 (bench.server); runs are created over the API, the
default network each, and paused or resumed over the API so that exactly 1, 2 or 4 train at once.
Steps are summed over a window from GET /api/runs (each run's step as of its last scalars event).
The conditions take turns round by round: 1 run, in-process, 2 runs, 4 runs, 1 run, ...

  in-process   the same trainer in this process, its events down the server's real path on its own
               thread (bench.inprocess): how the server trained before runs had worker processes;
               every served run is paused meanwhile

Afterwards, with all four training, an SSE client on each run for the stats events' publish -> client
latency, and the resident memory of the server and of each worker (psutil).
"""

import time

import torch

from bench.common import percentiles, ratios, spread
from bench.inprocess import TrainerWindows
from bench.latency import stream_latencies
from bench.server import BenchServer
from bnscope.config import RunConfig
from bnscope.data import make_splits, read_names

COUNTS = (1, 2, 4)


def measure(quick: bool, server: BenchServer, log=print) -> dict:
    torch.set_num_threads(1)
    window, rounds, settle = (1.0, 1, 0.3) if quick else (10.0, 4, 1.0)
    config = RunConfig()
    inprocess = TrainerWindows(config, make_splits(read_names(), config.block_size))
    rates: dict[str, list[float]] = {**{str(k): [] for k in COUNTS}, "in-process": []}
    try:
        for round_ in range(rounds):
            for condition in ("1", "in-process", "2", "4"):
                if condition == "in-process":
                    server.train_only(0)
                    steps, seconds = inprocess.run_for(window)
                else:
                    ids = server.train_only(int(condition))
                    time.sleep(settle)  # resumed workers past their first steps
                    steps, seconds = server.rate(ids, window)
                rates[condition].append(steps / seconds)
            log(f"  round {round_ + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.0f} steps/s" for k, v in rates.items()))
    finally:
        inprocess.close()
    ids = server.train_only(4)
    time.sleep(settle)
    memory = server.rss()
    stats = stream_latencies(server, ids, 1.0 if quick else 20.0)["stats"]
    server.train_only(0)
    return {
        "window_s": window, "rounds": rounds,
        "steps_per_s": {k: spread(v) for k, v in rates.items()},
        "scaling": {k: ratios(rates[str(k)], rates["1"]) for k in COUNTS[1:]},
        "worker_vs_inprocess": ratios(rates["1"], rates["in-process"]),
        "stats_latency_ms_4_runs": percentiles([s * 1e3 for s in stats]),
        "rss_4_runs": memory,
    }  # fmt: skip
