"""Scale: server RSS, history answer size/time and database size as a small-config run goes
from 10k to 1M steps; the server's CPU time per stats event."""

import time

import httpx
import psutil

from bench.server import BenchServer

SMALL = {"n_embd": 4, "n_hidden": 16, "n_layers": 2}


def measure(checkpoints: tuple[int, ...] = (10_000, 100_000, 1_000_000), log=print) -> list[dict]:
    rows = []
    with BenchServer() as server:
        run = server.create(**SMALL, steps=checkpoints[-1], dev_every=10_000)
        process = psutil.Process(server.process.pid)
        cpu0, t0 = process.cpu_times(), time.monotonic()
        for target in checkpoints:
            while server.run(run["id"])["step"] < target and server.run(run["id"])["status"] == "running":
                time.sleep(1)
            times, size = [], 0
            for _ in range(5):
                start = time.perf_counter()
                response = httpx.get(f"{server.url}/api/runs/{run['id']}/history", timeout=60)
                times.append(time.perf_counter() - start)
                size = len(response.content)
            times.sort()
            cpu = process.cpu_times()
            row = {
                "step": target,
                "rss_mib": process.memory_info().rss / 2**20,
                "history_kib": size / 1024,
                "history_ms_median": times[2] * 1e3,
                "history_ms_max": times[-1] * 1e3,
                "db_mib": sum(f.stat().st_size for f in server.data_dir.glob("bnscope.sqlite3*")) / 2**20,
                "wall_s": time.monotonic() - t0,
                "server_cpu_s": (cpu.user + cpu.system) - (cpu0.user + cpu0.system),
            }
            rows.append(row)
            log(row)
    return rows


if __name__ == "__main__":
    import sys

    quick = "--quick" in sys.argv
    measure((2_000, 5_000) if quick else (10_000, 100_000, 1_000_000))
