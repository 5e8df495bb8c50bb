"""Sampling latency through the API while runs train, and sampling throughput in-process.

    python -m bench --only sampling

Through a real `bnscope serve` (bench.server): GET /api/runs/{id}/samples?n=10, one request at a time
(50 ms apart), from a client in this process, in two conditions taking turns round by round:

  one run    one run training, no stream clients
  loaded     two runs training and 20 SSE clients reading their streams (10 a run); the requests
             alternate between the two runs

Live samples come from weights the worker sent at most 0.2 s before (else it is asked for new ones,
and an older copy is used meanwhile), so most requests also rebuild the network from new weights.
In-process (no server, no HTTP): names/s of bnscope.train.sampling.sample_names for 1, 100 and 1000 names
a call, one batch each, from the default network trained 5,000 steps (an untrained one rambles).
"""

import statistics
import time

import httpx
import torch

from bench.common import percentiles
from bench.server import BenchServer
from bench.sse import connect, disconnect
from bnscope.config import RunConfig
from bnscope.train.data import make_splits, read_names
from bnscope.train.sampling import sample_names
from bnscope.train.trainer import Trainer
from bnscope.train.worker import CommandQueue

COUNTS = (1, 100, 1000)
STREAM_CLIENTS = 20


def _requests(server: BenchServer, run_ids: list[int], count: int) -> list[float]:
    times = []
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for i in range(count):
            t0 = time.perf_counter()
            client.get(f"/api/runs/{run_ids[i % len(run_ids)]}/samples", params={"n": 10}).raise_for_status()
            times.append(time.perf_counter() - t0)
            time.sleep(0.05)
    return times


def names_per_s(quick: bool) -> dict[int, float]:
    torch.set_num_threads(1)
    config = RunConfig(steps=200 if quick else 5000)
    trainer = Trainer(config, make_splits(read_names(), config.block_size), device=torch.device("cpu"))
    trainer.run(CommandQueue())
    model = trainer.model.eval()
    rates = {}
    for count in COUNTS:
        times = []
        for seed in range(2 if quick else 5):
            t0 = time.perf_counter()
            sample_names(model, count, block_size=config.block_size, seed=seed)
            times.append(time.perf_counter() - t0)
        rates[count] = count / statistics.median(times)
    return rates


def measure(quick: bool, server: BenchServer, log=print) -> dict:
    rounds, per_round = (1, 5) if quick else (4, 50)
    times: dict[str, list[float]] = {"one run": [], "loaded": []}
    for round_ in range(rounds):
        one = server.train_only(1)
        _requests(server, one, 1)  # the first asks the worker for weights: not a steady-state request
        times["one run"] += _requests(server, one, per_round)
        both = server.train_only(2)
        clients = connect([f"{server.url}/api/runs/{run_ids}/events" for run_ids in both * (STREAM_CLIENTS // 2)])
        _requests(server, both, 2)
        times["loaded"] += _requests(server, both, per_round)
        disconnect(clients)
        log(
            f"  round {round_ + 1}/{rounds}: "
            + ", ".join(f"{k} p50 {statistics.median(v) * 1e3:.1f} ms" for k, v in times.items())
        )
    return {
        "api_ms": {k: percentiles([t * 1e3 for t in v]) for k, v in times.items()},
        "stream_clients": STREAM_CLIENTS,
        "names_per_s": names_per_s(quick),
    }
