"""Real servers for the tests: `bnscope serve` as a separate process (uvicorn on a free loopback port),
and waiting on a condition instead of sleeping. The fixtures built on them are in conftest.py."""

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

# a network that trains fast enough to finish inside a test
SMALL = {"n_hidden": 32, "n_layers": 2, "steps": 400, "stats_every": 50, "dev_every": 200}


def wait_for(predicate, timeout: float = 30.0, every: float = 0.05):
    """Poll until predicate() is truthy; return its value, or fail the test at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout} s waiting for {getattr(predicate, '__name__', predicate)}")


def ctrl_c_as_in_a_terminal() -> None:
    """For a child the test sends Ctrl-C (SIGINT) to: Python only raises KeyboardInterrupt where
    SIGINT was not ignored when it started, and a job a shell started in the background (CI's, say)
    hands its children SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """`bnscope serve` in a child process, as a user runs it."""

    def __init__(self, data_dir: Path, *args: str, env: dict | None = None, own_group: bool = False):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.args = args
        self.env = {**os.environ, "BNSCOPE_DATA_DIR": str(data_dir), **(env or {})}
        self.process: subprocess.Popen | None = None
        # a process group of its own, as a terminal's job: Ctrl-C to the group reaches the server and its
        # workers, never pytest
        self.group = dict(start_new_session=True, preexec_fn=ctrl_c_as_in_a_terminal) if own_group else {}

    def start(self) -> "LiveServer":
        command = [sys.executable, "-m", "bnscope.cli", "serve", "--port", str(self.port), *self.args]
        # anywhere but the checkout
        self.process = subprocess.Popen(command, cwd=self.data_dir.parent, env=self.env, **self.group)

        def healthy():
            if self.process.poll() is not None:
                pytest.fail(f"the server exited with code {self.process.returncode}")
            try:
                return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout=60, every=0.2)
        return self

    def stop(self, kill: bool = False) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill() if kill else self.process.terminate()
            self.process.wait(timeout=30)


@contextmanager
def live_server(data_dir: Path, *args: str, env: dict | None = None, own_group: bool = False):
    server = LiveServer(data_dir, *args, env=env, own_group=own_group).start()
    try:
        yield server
    finally:
        server.stop()
