"""The Ray backend against a private local Ray: each run an actor behind the same run interface,
its events streamed back, control working, a dead actor leaving its run interrupted."""

import os
import signal

import httpx
import pytest

from tests.servers import SMALL, live_server, wait_for

pytestmark = pytest.mark.slow  # a real `bnscope serve` training runs

pytest.importorskip("ray", reason="the Ray backend needs the extra: pip install 'bnscope[ray]'")
LONG = {**SMALL, "steps": 10_000_000}


def test_runs_train_as_ray_actors_with_control_and_a_dead_actor_interrupts_its_run(tmp_path):
    env = {"BNSCOPE_AUTOSTART": "false", "BNSCOPE_CHECKPOINT_EVERY": "500"}
    with live_server(tmp_path / "data", "--ray", "local", env=env) as server:
        run = httpx.post(f"{server.url}/api/runs", json={"config": LONG}, timeout=60).json()
        url = f"{server.url}/api/runs/{run['id']}"
        status = lambda: httpx.get(url, timeout=30).json()  # noqa: E731
        running = wait_for(lambda: (r := status())["status"] == "running" and r["step"] > 200 and r, timeout=120)
        assert running["worker"]["backend"] == "ray" and running["worker"]["pid"] not in (0, server.process.pid)
        # live control through the actor
        assert httpx.patch(url, json={"lr": 0.05}, timeout=30).json()["lr"] == 0.05
        assert httpx.post(f"{url}/pause", timeout=30).json()["status"] == "paused"
        paused = status()["step"]
        assert httpx.post(f"{url}/resume", timeout=30).json()["status"] == "running"
        wait_for(lambda: status()["step"] > paused + 200)
        samples = httpx.get(f"{url}/samples", params={"n": 3}, timeout=30)
        assert samples.status_code == 200 and len(samples.json()["samples"]) == 3

        def actions():  # the stored timeline: the writer is about a second behind a training run
            return [
                e["action"]
                for e in httpx.get(f"{url}/history", timeout=30).json()["timeline"]
                if e["type"] == "control"
            ]

        wait_for(lambda: actions() == ["lr", "pause", "resume"])
        # the actor's process dies: the run is interrupted, resumable, and the server carries on
        wait_for(lambda: status()["step"] > 1200)
        before = status()
        os.kill(before["worker"]["pid"], signal.SIGKILL)
        interrupted = wait_for(lambda: (r := status())["status"] == "interrupted" and r, timeout=60)
        # back to its last checkpoint: within one checkpoint interval (500) of the kill, not before the pause
        assert "Ray actor" in interrupted["message"]
        assert max(paused, before["step"] - 500) <= interrupted["step"] <= before["step"] + 500
        assert httpx.post(f"{url}/resume", timeout=30).status_code == 200
        again = wait_for(
            lambda: (r := status())["status"] == "running" and r["step"] > interrupted["step"] + 100 and r, timeout=120
        )
        assert again["worker"]["pid"] != interrupted["worker"]["pid"]
        assert httpx.post(f"{url}/stop", timeout=30).json()["status"] == "stopped"
