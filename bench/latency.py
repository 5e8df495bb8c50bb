"""How long a loss point and a stats event take from the training step to a client, in parts.

    python -m bench --only latency

  in the trainer   (in this process, bench.inprocess) from the moment a step's loss exists (its
                   backward returned) to the trainer's emit of the event that carries it: for a loss
                   point, the wait for the next flush (the trainer sends losses every FLUSH_SECONDS,
                   0.1 s, and at every stats step); for a stats event, computing the statistics
  server -> client (a real `bnscope serve`, a real SSE client) from the server's publish (`time` in
                   the event: its wall clock) to the client holding the whole event
  control round trip  PATCH /api/runs/{id} {"lr"} sent -> its `control` event at the client: a command
                   to the worker, obeyed between two steps, and its event back through the server

The hop from the worker to the server (a pipe between two local processes) is in none of these: an
event carries no time from the worker. The round trip holds it (and the hop back).
"""

import threading
import time

import torch

from bench.common import percentiles
from bench.inprocess import TrainerWindows
from bench.server import BenchServer
from bench.sse import connect, disconnect
from bnscope.config import RunConfig
from bnscope.train.data import make_splits, read_names
from bnscope.train.trainer import FLUSH_SECONDS


def stream_latencies(server: BenchServer, run_ids: list[int], seconds: float) -> dict[str, list[float]]:
    """Publish -> client seconds of every scalars and stats event over `seconds`, a client a run."""
    seen: dict[str, list[float]] = {"scalars": [], "stats": []}
    lock = threading.Lock()

    def on_event(kind: str, data: dict, received: float) -> None:
        if kind in seen:
            with lock:
                seen[kind].append(received - data["time"])

    clients = connect([f"{server.url}/api/runs/{run_id}/events" for run_id in run_ids], on_event)
    time.sleep(seconds)
    disconnect(clients)
    with lock:
        return {kind: list(values) for kind, values in seen.items()}


def control_round_trips(server: BenchServer, run_id: int, count: int) -> list[float]:
    """Seconds from sending an lr change to its control event at an SSE client, `count` times."""
    arrived: dict[float, float] = {}
    changed = threading.Condition()

    def on_event(kind: str, data: dict, received: float) -> None:
        if kind == "control" and data["action"] == "lr":
            with changed:
                arrived[data["lr"]] = received
                changed.notify_all()

    clients = connect([f"{server.url}/api/runs/{run_id}/events"], on_event)
    trips = []
    base = server.run(run_id)["lr"]
    for k in range(count):
        lr = base * (1 + (k + 1) * 1e-6)  # a new value each time: its event is told apart
        sent = time.time()
        server.set_lr(run_id, lr)
        with changed:
            changed.wait_for(lambda: lr in arrived, timeout=30)
        trips.append(arrived[lr] - sent)
        time.sleep(0.2)
    disconnect(clients)
    return trips


class _TimedBackprop:
    """The trainer's ManualBackprop, noting when each step's loss exists (step i: times[i])."""

    def __init__(self, backprop, times: list[float]):
        self.backprop, self.times = backprop, times

    def __call__(self, Xb, Yb):
        loss = self.backprop(Xb, Yb)
        self.times.append(time.perf_counter())
        return loss

    @property
    def h(self):
        return self.backprop.h

    @property
    def dh(self):
        return self.backprop.dh


def in_trainer(seconds: float) -> dict[str, list[float]]:
    """Step's loss exists -> its event emitted, seconds, for every loss point and stats event."""
    torch.set_num_threads(1)
    times: list[float] = []
    waits: dict[str, list[float]] = {"scalars": [], "stats": []}

    def tap(event: dict, at: float) -> None:
        if event["type"] == "scalars":
            waits["scalars"] += [at - times[event["step"] + j] for j in range(len(event["loss"]))]
        elif event["type"] == "stats":
            waits["stats"].append(at - times[event["step"]])

    config = RunConfig()
    windows = TrainerWindows(config, make_splits(read_names(), config.block_size), tap=tap)
    windows.trainer.backprop = _TimedBackprop(windows.trainer.backprop, times)
    try:
        windows.run_for(seconds)
    finally:
        windows.close()
    return waits


def measure(quick: bool, server: BenchServer, log=print) -> dict:
    seconds, trips = (1.0, 2) if quick else (30.0, 30)
    server.train_only(0)
    waits = in_trainer(seconds)
    ids = server.train_only(1)
    time.sleep(0.3 if quick else 5)  # past the worker's start-up
    served = stream_latencies(server, ids, seconds)
    round_trips = control_round_trips(server, ids[0], trips)
    server.train_only(0)
    ms = lambda values: percentiles([v * 1e3 for v in values])  # noqa: E731
    result = {
        "flush_seconds": FLUSH_SECONDS,
        "in_trainer_ms": {kind: ms(values) for kind, values in waits.items()},
        "server_to_client_ms": {kind: ms(values) for kind, values in served.items()},
        "control_round_trip_ms": ms(round_trips),
        "seconds": seconds,
    }
    log(f"  {result}")
    return result
