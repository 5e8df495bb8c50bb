"""Stopping is not losing: a real server killed (SIGKILL) or stopped (SIGTERM) with runs training,
and a worker process killed under a running server."""

import os
import signal
import threading
import time

import httpx

from tests.web.conftest import SMALL, live_server, sse_events, wait_for

CONFIG = {**SMALL, "steps": 12_000}  # still training seconds after it starts
ENV = {"BNSCOPE_AUTOSTART": "false", "BNSCOPE_CHECKPOINT_EVERY": "500"}


def status_of(server, run_id):
    return httpx.get(f"{server.url}/api/runs/{run_id}").json()


def losses(server, run_id):
    """Every per-step loss, raw (the export)."""
    return httpx.get(f"{server.url}/api/runs/{run_id}/export", params={"format": "json"}, timeout=60).json()["series"]["loss"]


def finish_and_compare(server, run_id, config=CONFIG):
    """Let the run finish beside an uninterrupted twin; their losses must be the same, step for step, bit for bit."""
    reference = httpx.post(f"{server.url}/api/runs", json={"config": config}).json()
    for each in (run_id, reference["id"]):
        wait_for(lambda: status_of(server, each)["status"] == "finished", timeout=240)
    resumed, uninterrupted = losses(server, run_id), losses(server, reference["id"])
    assert resumed["steps"] == uninterrupted["steps"] == list(range(config["steps"]))
    assert resumed["values"] == uninterrupted["values"]
    return resumed


def test_killed_server_keeps_history_and_resumes_deterministically(tmp_path):
    with live_server(tmp_path / "data", env=ENV) as server:
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
        resumed = finish_and_compare(server, run["id"])

        server.stop()
        server.start()  # a finished run stays whole across restarts, samples included
        assert status_of(server, run["id"])["status"] == "finished"
        assert losses(server, run["id"]) == resumed
        samples = httpx.get(f"{server.url}/api/runs/{run['id']}/samples", params={"n": 5, "seed": 1})
        assert samples.status_code == 200 and len(samples.json()["samples"]) == 5


def test_sigterm_with_clients_connected_checkpoints_every_run_and_resumes_exactly(tmp_path):
    config = CONFIG
    with live_server(tmp_path / "data", env=ENV) as server:
        runs = [httpx.post(f"{server.url}/api/runs", json={"config": config}).json() for _ in range(2)]
        for run in runs:
            wait_for(lambda: status_of(server, run["id"])["step"] > 700)
        def read_until_the_server_goes(url: str) -> None:
            try:
                with httpx.stream("GET", url, timeout=None) as response:
                    for _ in sse_events(response):
                        pass
            except httpx.HTTPError:
                pass  # cut mid-stream by the shutdown: what a browser's EventSource sees too

        streams = []  # two open streams, as two browser tabs would hold
        for run in runs:
            thread = threading.Thread(target=read_until_the_server_goes, args=(f"{server.url}/api/runs/{run['id']}/events",), daemon=True)
            thread.start()
            streams.append(thread)
        time.sleep(1)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=15)
        assert time.monotonic() - started < 10  # gone within 10 s, streams and all
        for thread in streams:
            thread.join(timeout=5)
            assert not thread.is_alive()  # the open streams were ended, not left hanging
        assert server.process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down

        server.start()
        for run in runs:
            after = status_of(server, run["id"])
            assert after["status"] == "interrupted" and "resume" in after["message"]
            kept = losses(server, run["id"])
            assert kept["steps"][-1] == after["step"] - 1  # checkpointed at the very step it stopped at: nothing to redo
        assert len(httpx.get(f"{server.url}/api/runs").json()) == 2  # no new default run beside them
        httpx.post(f"{server.url}/api/runs/{runs[0]['id']}/resume")
        httpx.post(f"{server.url}/api/runs/{runs[1]['id']}/stop")
        finish_and_compare(server, runs[0]["id"], config)


def test_a_killed_worker_leaves_its_run_interrupted_and_the_rest_carry_on(tmp_path):
    with live_server(tmp_path / "data", env=ENV) as server:
        victim = httpx.post(f"{server.url}/api/runs", json={"config": CONFIG}).json()
        other = httpx.post(f"{server.url}/api/runs", json={"config": {**SMALL, "steps": 100_000}}).json()
        wait_for(lambda: status_of(server, victim["id"])["step"] > 1200)
        pid = status_of(server, victim["id"])["worker"]["pid"]
        os.kill(pid, signal.SIGKILL)
        interrupted = wait_for(lambda: (r := status_of(server, victim["id"]))["status"] == "interrupted" and r)
        assert "SIGKILL" in interrupted["message"] and "resume" in interrupted["message"]
        assert interrupted["step"] % 500 == 0 and interrupted["step"] >= 1000  # back at its last checkpoint
        before = status_of(server, other["id"])["step"]
        wait_for(lambda: status_of(server, other["id"])["step"] > before + 200)  # the other run trains on
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        assert httpx.post(f"{server.url}/api/runs/{victim['id']}/resume").status_code == 200
        httpx.post(f"{server.url}/api/runs/{other['id']}/stop")
        finish_and_compare(server, victim["id"])


def test_a_default_run_is_made_only_for_an_empty_store(tmp_path):
    with live_server(tmp_path / "data", env={"BNSCOPE_AUTOSTART": "true"}) as server:
        (first,) = httpx.get(f"{server.url}/api/runs").json()
        assert first["name"] == "default"
        server.stop()
        server.start()
        assert [r["id"] for r in httpx.get(f"{server.url}/api/runs").json()] == [first["id"]]
