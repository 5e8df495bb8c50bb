"""The server while it trains: event latency (stats exist -> SSE client parsed them), API
latency, steps/s with 0, 1 and 10 connected stream clients (interleaved), sampling throughput,
and the server-side cost of one stats event."""

import json
import statistics
import threading
import time
import zlib

import httpx

from bnscope.config import RunConfig
from bnscope.history import series_points
from bnscope.hub import to_json
from bnscope.sampling import sample_names
from bench.server import BenchServer


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class StreamClient(threading.Thread):
    """Reads a run's SSE stream, recording now - event time for every stats event."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.latencies, self.stop = url, [], threading.Event()

    def run(self) -> None:
        from tests.web.conftest import sse_events

        with httpx.stream("GET", self.url, timeout=httpx.Timeout(10, read=60)) as response:
            for event in sse_events(response):
                data = json.loads(event["data"])
                if event["event"] == "stats":
                    self.latencies.append(time.time() - data["time"])
                if self.stop.is_set():
                    return


def steps_per_s(server: BenchServer, run_id: int, seconds: float) -> float:
    start = server.run(run_id)["step"]
    time.sleep(seconds)
    return (server.run(run_id)["step"] - start) / seconds


def measure_server(window_s: float = 8.0, rounds: int = 3, api_requests: int = 300, log=print) -> dict:
    with BenchServer() as server:
        run = server.create(steps=10_000_000)
        events_url = f"{server.url}/api/runs/{run['id']}/events"
        time.sleep(3)  # past start-up
        # --- steps/s with 0, 1, 10 clients, interleaved rounds
        rates: dict[int, list[float]] = {0: [], 1: [], 10: []}
        latencies: list[float] = []
        for _ in range(rounds):
            for clients in (0, 1, 10):
                readers = [StreamClient(events_url) for _ in range(clients)]
                for reader in readers:
                    reader.start()
                time.sleep(1)
                rates[clients].append(steps_per_s(server, run["id"], window_s))
                for reader in readers:
                    reader.stop.set()
                    latencies += reader.latencies
                log({"clients": clients, "steps_per_s": rates[clients][-1]})
        # --- API latency while training at full speed
        api = {"GET /api/runs": [], "GET samples n=10": []}
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for i in range(api_requests):
                for name, path in (("GET /api/runs", "/api/runs"), ("GET samples n=10", f"/api/runs/{run['id']}/samples?n=10")):
                    t0 = time.perf_counter()
                    assert client.get(path).status_code == 200
                    api[name].append(time.perf_counter() - t0)
                time.sleep(0.01)
    return {
        "steps_per_s": {k: statistics.median(v) for k, v in rates.items()},
        "steps_per_s_range": {k: (min(v), max(v)) for k, v in rates.items()},
        "event_latency_ms": {q: percentile(latencies, p) * 1e3 for q, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))},
        "event_count": len(latencies),
        "api_ms": {name: {"p50": percentile(v, 0.5) * 1e3, "p99": percentile(v, 0.99) * 1e3} for name, v in api.items()},
    }


def measure_sampling(counts=(1, 100, 1000), repeats: int = 5, train_steps: int = 5000) -> dict[int, float]:
    """names/s for a request of `count` names (one batch), from the default network trained
    `train_steps` steps (an untrained one rambles to max_len), median of repeats."""
    from bnscope.data import make_splits, read_names
    from bnscope.trainer import Trainer

    config = RunConfig(steps=train_steps, stats_every=10**6, dev_every=10**6)
    trainer = Trainer(config, make_splits(read_names(), config.block_size))
    trainer.run()
    _, model = trainer.snapshot()
    rates = {}
    for count in counts:
        times = []
        for seed in range(repeats):
            t0 = time.perf_counter()
            sample_names(model, count, block_size=config.block_size, seed=seed)
            times.append(time.perf_counter() - t0)
        rates[count] = count / statistics.median(times)
    return rates


def measure_event_cost(repeats: int = 50) -> dict[str, float]:
    """Server-side CPU for one stats event of the default network: JSON once (hub), series
    points and compression (store writer)."""
    from bnscope.data import make_splits, read_names
    from bnscope.trainer import Trainer

    config = RunConfig(steps=1)
    events = []
    Trainer(config, make_splits(read_names(), config.block_size), emit=events.append).run()
    stats = next(e for e in events if e["type"] == "stats")
    stats["time"] = time.time()
    t0 = time.process_time()
    for _ in range(repeats):
        text = to_json(stats)
        series_points(stats, config)
        zlib.compress(text.encode(), 6)
    return {"cpu_ms_per_stats_event": (time.process_time() - t0) / repeats * 1e3, "stats_event_kib": len(text) / 1024}


if __name__ == "__main__":
    import sys

    quick = "--quick" in sys.argv
    print(measure_event_cost(5 if quick else 50))
    print(measure_sampling(repeats=2 if quick else 5))
    print(measure_server(window_s=2 if quick else 8, rounds=1 if quick else 3, api_requests=20 if quick else 300))
