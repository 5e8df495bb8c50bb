"""A real `bnscope serve` process for the benchmarks (the tests use their own fixture)."""

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx



class BenchServer:
    def __init__(self, **env: str):
        self.data_dir = Path(tempfile.mkdtemp(prefix="bnscope-bench-"))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "BNSCOPE_DATA_DIR": str(self.data_dir), "BNSCOPE_AUTOSTART": "false", **env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bnscope.cli", "serve", "--port", str(self.port)], cwd=self.data_dir, env=env,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("the benchmark server did not start")

    def create(self, **config) -> dict:
        return httpx.post(f"{self.url}/api/runs", json={"config": config}, timeout=30).json()

    def run(self, run_id: int) -> dict:
        return httpx.get(f"{self.url}/api/runs/{run_id}", timeout=30).json()

    def __enter__(self) -> "BenchServer":
        return self

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
