"""A real `bnscope serve` for the benchmarks: `python -m bnscope.cli serve` in a subprocess, on a free
port, with a fresh data directory; settings as BNSCOPE_* environment variables (the tests use their
own fixture).

    with BenchServer(autostart=True, BNSCOPE_MAX_RUNS="4") as server:
        server.startup_s                           # launch -> the default run it starts is `running`
        ids = server.train_only(2)                 # the first 2 of its benchmark runs train, any others pause
        server.rate(ids, 10.0)                     # (steps they did together, seconds)
        server.rss()                               # the server's and its children's memory

Benchmark runs are the default network with LONG steps, created over the API (POST /api/runs) as
they are first needed and shared by every measurement made on the server. Its stderr goes to a file,
shown if it fails to start.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

LONG = 10_000_000  # steps: a run that outlasts any benchmark


class BenchServer:
    def __init__(self, autostart: bool = False, **env: str):
        self.data_dir = Path(tempfile.mkdtemp(prefix="bnscope-bench-"))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.pool: list[int] = []
        env = {**os.environ, "BNSCOPE_DATA_DIR": str(self.data_dir), "BNSCOPE_AUTOSTART": str(autostart).lower(), **env}
        self.log = (self.data_dir / "server.log").open("w")
        self.launched = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bnscope.cli", "serve", "--port", str(self.port)],
            cwd=self.data_dir,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        self.http = httpx.Client(base_url=self.url, timeout=60)
        self.startup_s = None
        try:
            self._wait_until_up()
            if autostart:  # the default run it starts on an empty store: stopped once it trains, freeing its slot
                first = self._first_running()
                self.startup_s = time.perf_counter() - self.launched
                self._ok(self.http.post(f"/api/runs/{first}/stop"))
        except BaseException:
            self.close()
            raise

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the benchmark server exited with code {self.process.returncode}: {self._log_tail()}"
                )
            try:
                if self.http.get("/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"the benchmark server did not start within 180 s: {self._log_tail()}")

    def _first_running(self) -> int:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            running = [run["id"] for run in self.runs() if run["status"] == "running"]
            if running:
                return running[0]
            time.sleep(0.05)
        raise RuntimeError(f"the default run did not start within 180 s: {self._log_tail()}")

    def _log_tail(self) -> str:
        self.log.flush()
        return (self.data_dir / "server.log").read_text()[-2000:]

    # ---- the API ---------------------------------------------------------------------------------
    def _ok(self, response: httpx.Response) -> dict:
        response.raise_for_status()
        return response.json()

    def create(self, **config) -> dict:
        return self._ok(self.http.post("/api/runs", json={"config": {"steps": LONG, **config}}))

    def run(self, run_id: int) -> dict:
        return self._ok(self.http.get(f"/api/runs/{run_id}"))

    def runs(self) -> list[dict]:
        return self._ok(self.http.get("/api/runs"))

    def pause(self, run_id: int) -> dict:
        return self._ok(self.http.post(f"/api/runs/{run_id}/pause"))

    def resume(self, run_id: int) -> dict:
        return self._ok(self.http.post(f"/api/runs/{run_id}/resume"))

    def set_lr(self, run_id: int, lr: float) -> dict:
        return self._ok(self.http.patch(f"/api/runs/{run_id}", json={"lr": lr}))

    def wait_for(self, run_id: int, status: str, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        while (run := self.run(run_id))["status"] != status:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} is {run['status']}, not {status}, after {timeout:.0f} s")
            time.sleep(0.05)
        return run

    def steps(self, run_ids: list[int]) -> int:
        """The steps the runs have done, summed (each as of its last scalars event, ~0.1 s old)."""
        by_id = {run["id"]: run["step"] for run in self.runs()}
        return sum(by_id[run_id] for run_id in run_ids)

    def train_only(self, count: int) -> list[int]:
        """The first `count` benchmark runs training (made as needed), the others paused; their ids."""
        while len(self.pool) < count:
            self.pool.append(self.create()["id"])
        active = self.pool[:count]
        for run_id in self.pool[count:]:
            if self.run(run_id)["status"] in ("running", "created"):
                self.wait_for(run_id, "running")
                self.pause(run_id)
        for run_id in active:
            if self.run(run_id)["status"] == "paused":
                self.resume(run_id)
            self.wait_for(run_id, "running")
        return active

    def rate(self, run_ids: list[int], seconds: float) -> tuple[float, float]:
        """(steps, seconds) the runs did together over a window of about `seconds`."""
        start, t0 = self.steps(run_ids), time.perf_counter()
        time.sleep(seconds)
        return self.steps(run_ids) - start, time.perf_counter() - t0

    # ---- the processes ---------------------------------------------------------------------------
    def rss(self) -> dict:
        """Resident memory in MiB: the server, its run workers (spawned processes) and its other children."""
        server = psutil.Process(self.process.pid)
        workers, others = [], []
        for child in server.children(recursive=True):
            try:
                mib, cmdline = child.memory_info().rss / 2**20, " ".join(child.cmdline())
            except psutil.Error:
                continue
            (workers if "spawn_main" in cmdline or "RunActor" in cmdline else others).append(mib)
        return {"server_mib": server.memory_info().rss / 2**20, "workers_mib": workers, "others_mib": others}

    def db_mib(self) -> float:
        return sum(f.stat().st_size for f in self.data_dir.glob("bnscope.sqlite3*")) / 2**20

    def close(self) -> None:
        """Ctrl-C's stop (SIGINT: Ray's own SIGTERM handler would cut the server's shutdown short)."""
        self.http.close()
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "BenchServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
