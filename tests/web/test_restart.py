"""Durability against a real server process killed with SIGKILL mid-run."""

import time

import httpx

from tests.web.conftest import SMALL, live_server, wait_for

CONFIG = {**SMALL, "steps": 4000}


def status_of(server, run_id):
    return httpx.get(f"{server.url}/api/runs/{run_id}").json()


def losses(server, run_id):
    series = httpx.get(f"{server.url}/api/runs/{run_id}/history", params={"max_points": 10_000}).json()["series"]
    return series["loss"]


def test_killed_server_keeps_history_and_resumes_deterministically(tmp_path):
    env = {"BNSCOPE_AUTOSTART": "false", "BNSCOPE_CHECKPOINT_EVERY": "500"}
    with live_server(tmp_path / "data", env=env) as server:
        run = httpx.post(f"{server.url}/api/runs", json={"config": CONFIG}).json()
        seen = wait_for(lambda: (s := status_of(server, run["id"])["step"]) > 1200 and s)
        time.sleep(1.5)  # the store flushes about once a second: what was seen then must survive
        server.stop(kill=True)

        server.start()
        interrupted = status_of(server, run["id"])
        assert interrupted["status"] == "interrupted"
        kept = losses(server, run["id"])
        assert kept["steps"][-1] >= seen - 1 and kept["steps"] == list(range(len(kept["steps"])))

        assert httpx.post(f"{server.url}/api/runs/{run['id']}/resume").status_code == 200
        reference = httpx.post(f"{server.url}/api/runs", json={"config": CONFIG}).json()  # never interrupted
        for run_id in (run["id"], reference["id"]):
            wait_for(lambda: status_of(server, run_id)["status"] == "finished", timeout=120)
        resumed, uninterrupted = losses(server, run["id"]), losses(server, reference["id"])
        assert resumed["steps"] == uninterrupted["steps"] == list(range(CONFIG["steps"]))
        assert resumed["values"] == uninterrupted["values"]  # step for step, bit for bit

        server.stop()
        server.start()  # a finished run stays whole across restarts, samples included
        assert status_of(server, run["id"])["status"] == "finished"
        assert losses(server, run["id"]) == resumed
        samples = httpx.get(f"{server.url}/api/runs/{run['id']}/samples", params={"n": 5, "seed": 1})
        assert samples.status_code == 200 and len(samples.json()["samples"]) == 5
