"""A run as a Ray actor (`bnscope serve --ray local`: BNSCOPE_RAY=local) against a run in a local
worker process: steps/s, event latency, start-up time and memory.

    python -m bench --only ray

Two real servers side by side (bench.server), each with one default-network run created over the
API: the process-backend server every served section shares, and a Ray one. They take turns, a
window each per round, the other's run paused meanwhile (Ray's own processes stay up: their idle
cost falls on both). Then, for each in turn, an SSE client reads its run's events (publish -> client)
and lr changes make control round trips (PATCH sent -> its control event at the client: the trip to
the worker and back, where an actor's long-polled events differ from a worker's pipe).
Start-up: the server's launch to its first run `running` (the default run it starts on an empty store).
"""

import time

from bench.common import percentiles, ratios, spread
from bench.latency import control_round_trips, stream_latencies
from bench.server import BenchServer


def train_alone(this: BenchServer, servers: dict[str, BenchServer]) -> list[int]:
    """One run training on `this` server, every run of the others paused: its id."""
    for other in servers.values():
        if other is not this:
            other.train_only(0)
    return this.train_only(1)


def measure(quick: bool, server: BenchServer, log=print) -> dict:
    window, rounds, latency_s, trips, settle = (1.0, 1, 1.0, 2, 0.3) if quick else (10.0, 4, 20.0, 20, 1.0)
    with BenchServer(autostart=True, BNSCOPE_RAY="local") as ray:
        servers = {"process": server, "ray": ray}
        rates: dict[str, list[float]] = {"process": [], "ray": []}
        for round_ in range(rounds):
            for name, this in servers.items():
                ids = train_alone(this, servers)
                time.sleep(settle)
                steps, seconds = this.rate(ids, window)
                rates[name].append(steps / seconds)
            log(f"  round {round_ + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.0f} steps/s" for k, v in rates.items()))
        latency = {}
        for name, this in servers.items():
            ids = train_alone(this, servers)
            time.sleep(settle)
            served = stream_latencies(this, ids, latency_s)
            latency[name] = {
                **{kind: percentiles([v * 1e3 for v in values]) for kind, values in served.items()},
                "control_round_trip": percentiles([v * 1e3 for v in control_round_trips(this, ids[0], trips)]),
            }
            this.train_only(0)
        memory = ray.rss()
    return {
        "window_s": window,
        "rounds": rounds,
        "steps_per_s": {k: spread(v) for k, v in rates.items()},
        "ray_vs_process": ratios(rates["ray"], rates["process"]),
        "latency_ms": latency,
        "startup_s": {"process": server.startup_s, "ray": ray.startup_s},
        "ray_rss_mib": {
            "server": memory["server_mib"],
            "actor": memory["workers_mib"],
            "ray_processes": sum(memory["others_mib"]),
        },
    }
