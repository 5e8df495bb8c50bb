"""Scale: the server's memory, the /history answer and the database as one run grows.

    python -m bench --only scale

A real `bnscope serve` (bench.server) trains one run of a small network (SMALL: fast steps, the
same events) to 1,000,000 steps. At 10k, 100k and 1M steps, while it trains (at 1M: finished): the
server's RSS; GET /history for the whole run (start=0, end=step, max_points=2000: what the page asks
for first) and for its last 10,000 steps (a zoomed range), each 5 times: answer size, median and max
time; the size of the database's files.
"""

import statistics
import time


from bench.server import BenchServer

SMALL = {"n_embd": 4, "n_hidden": 16, "n_layers": 2}
ZOOM = 10_000


def _history(server: BenchServer, run_id: int, start: int, end: int) -> dict:
    times, size = [], 0
    for _ in range(5):
        t0 = time.perf_counter()
        response = server.http.get(
            f"/api/runs/{run_id}/history", params={"start": start, "end": end, "max_points": 2000}
        )
        response.raise_for_status()
        times.append(time.perf_counter() - t0)
        size = len(response.content)
    return {"kib": size / 1024, "ms_median": statistics.median(times) * 1e3, "ms_max": max(times) * 1e3}


def measure(quick: bool, log=print) -> dict:
    checkpoints = (300, 600) if quick else (10_000, 100_000, 1_000_000)
    rows = []
    with BenchServer() as server:
        run = server.create(**SMALL, steps=checkpoints[-1], dev_every=10_000)
        t0 = time.monotonic()
        for target in checkpoints:
            while (now := server.run(run["id"]))["status"] in ("queued", "created") or (
                now["step"] < target and now["status"] == "running"
            ):
                time.sleep(0.5)
            step = now["step"]
            rows.append(
                {
                    "step": step,
                    "rss_mib": server.rss()["server_mib"],
                    "db_mib": server.db_mib(),
                    "whole": _history(server, run["id"], 0, step),
                    "zoom": _history(server, run["id"], max(0, step - ZOOM), step),
                    "wall_s": time.monotonic() - t0,
                }
            )
            log(f"  {rows[-1]}")
    return {"config": SMALL, "rows": rows, "zoom_steps": ZOOM}
