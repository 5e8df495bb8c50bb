"""Stopping is not losing: a real server killed (SIGKILL) or stopped (SIGTERM) with runs training,
Ctrl-C to the whole process group (the server and its workers, as a terminal sends it), and one
worker process sent SIGTERM or killed under a running server. Every run ends `interrupted` and,
resumed, trains the very losses of a run that was never stopped."""

import os
import signal
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from bnscope.api.main import create_app
from bnscope.storage.store import Store
from bench.hostile import sse_events
from tests.servers import SMALL, live_server, wait_for

pytestmark = pytest.mark.slow  # a real `bnscope serve` training runs

CONFIG = {**SMALL, "steps": 12_000}  # still training seconds after it starts
SHORT = {**SMALL, "steps": 3000}  # past its first checkpoint (500) within a few seconds, and soon finished
ACTIVE = ("created", "queued", "running", "paused")
ENV = {"BNSCOPE_AUTOSTART": "false", "BNSCOPE_CHECKPOINT_EVERY": "500"}


def status_of(server, run_id):
    return httpx.get(f"{server.url}/api/runs/{run_id}").json()


def losses(server, run_id):
    """Every per-step loss, raw (the export)."""
    return httpx.get(f"{server.url}/api/runs/{run_id}/export", params={"format": "json"}, timeout=60).json()["series"][
        "loss"
    ]


def finish_and_compare(server, *run_ids, config=CONFIG):
    """Let the runs finish beside an uninterrupted twin; their losses must be the twin's, step for step, bit for bit.
    The first run's losses are returned."""
    reference = httpx.post(f"{server.url}/api/runs", json={"config": config}).json()
    for each in (*run_ids, reference["id"]):
        wait_for(lambda: status_of(server, each)["status"] == "finished", timeout=240)
    uninterrupted = losses(server, reference["id"])
    assert uninterrupted["steps"] == list(range(config["steps"]))
    for each in run_ids:
        resumed = losses(server, each)
        assert resumed["steps"] == uninterrupted["steps"], f"run {each} has steps missing or repeated"
        assert resumed["values"] == uninterrupted["values"], f"run {each} did not resume exactly"
    return losses(server, run_ids[0])


def ended(server, run_id) -> dict:
    """The run once it is no longer training: any end, so that a wrong one fails at once, by name."""
    return wait_for(lambda: (run := status_of(server, run_id))["status"] not in ACTIVE and run)


def assert_interrupted(run: dict, by: str) -> None:
    assert run["status"] == "interrupted", f"run {run['id']} ended {run['status']} ({run['message']!r}) after {by}"
    assert "resume" in run["message"], run["message"]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_killed_server_keeps_history_and_resumes_deterministically(tmp_path):
    with live_server(tmp_path / "data", env=ENV) as server:
        run = httpx.post(f"{server.url}/api/runs", json={"config": CONFIG}).json()
        seen = wait_for(lambda: (s := status_of(server, run["id"])["step"]) > 1200 and s)
        # the store flushes about once a second: what was seen then must survive
        wait_for(lambda: Store(server.data_dir / "bnscope.sqlite3").run(run["id"])["step"] >= seen)
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
            thread = threading.Thread(
                target=read_until_the_server_goes, args=(f"{server.url}/api/runs/{run['id']}/events",), daemon=True
            )
            thread.start()
            streams.append(thread)
        wait_for(lambda: httpx.get(f"{server.url}/healthz").json()["streams"] == 2)  # both streams open
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
            assert (
                kept["steps"][-1] == after["step"] - 1
            )  # checkpointed at the very step it stopped at: nothing to redo
        assert len(httpx.get(f"{server.url}/api/runs").json()) == 2  # no new default run beside them
        httpx.post(f"{server.url}/api/runs/{runs[0]['id']}/resume")
        httpx.post(f"{server.url}/api/runs/{runs[1]['id']}/stop")
        finish_and_compare(server, runs[0]["id"], config=config)


def test_a_killed_worker_leaves_its_run_interrupted_and_the_rest_carry_on(tmp_path):
    with live_server(tmp_path / "data", env=ENV) as server:
        victim = httpx.post(f"{server.url}/api/runs", json={"config": CONFIG}).json()
        other = httpx.post(f"{server.url}/api/runs", json={"config": {**SMALL, "steps": 100_000}}).json()
        wait_for(lambda: status_of(server, victim["id"])["step"] > 1200)
        pid = status_of(server, victim["id"])["worker"]["pid"]
        os.kill(pid, signal.SIGKILL)
        interrupted = ended(server, victim["id"])
        assert_interrupted(interrupted, "SIGKILL to its worker")
        assert "SIGKILL" in interrupted["message"]
        assert interrupted["step"] % 500 == 0 and interrupted["step"] >= 1000  # back at its last checkpoint
        before = status_of(server, other["id"])["step"]
        wait_for(lambda: status_of(server, other["id"])["step"] > before + 200)  # the other run trains on
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        assert httpx.post(f"{server.url}/api/runs/{victim['id']}/resume").status_code == 200
        httpx.post(f"{server.url}/api/runs/{other['id']}/stop")
        finish_and_compare(server, victim["id"])


def test_a_run_paused_when_the_server_was_killed_is_interrupted_after_the_restart_and_resumes(tmp_path):
    with live_server(tmp_path / "data", env=ENV) as server:
        run = httpx.post(f"{server.url}/api/runs", json={"config": CONFIG}).json()
        wait_for(lambda: status_of(server, run["id"])["step"] > 600)
        assert httpx.post(f"{server.url}/api/runs/{run['id']}/pause").json()["status"] == "paused"
        # the pause is on disk once /history, which answers the store's state, says so
        wait_for(lambda: httpx.get(f"{server.url}/api/runs/{run['id']}/history").json()["run"]["status"] == "paused")
        server.stop(kill=True)

        server.start()  # no worker holds it now: paused would be a run nothing can resume or stop
        assert_interrupted(status_of(server, run["id"]), "a SIGKILL to the server while paused")
        assert httpx.post(f"{server.url}/api/runs/{run['id']}/resume").status_code == 200
        wait_for(lambda: status_of(server, run["id"])["status"] == "running")
        assert httpx.post(f"{server.url}/api/runs/{run['id']}/stop").json()["status"] == "stopped"


def test_a_watched_run_interrupted_by_a_restart_is_left_to_its_own_process(settings):
    with TestClient(create_app(settings)) as client:
        run = client.post("/api/watched", json={"name": "my cnn", "description": {"model": "CNN"}}).json()
    with TestClient(create_app(settings)) as client:
        assert client.get(f"/api/runs/{run['id']}").json()["status"] == "interrupted"
        refused = client.post(f"/api/runs/{run['id']}/resume")  # bnscope cannot train the user's network
        assert refused.status_code == 409 and "resumed" in refused.json()["detail"]
        assert client.get("/healthz").json()["queued"] == 0


def test_ctrl_c_to_the_process_group_leaves_every_run_interrupted_and_resuming_exactly(tmp_path):
    # the workers share the server's process group: a terminal's Ctrl-C reaches each of them directly,
    # not only through the server
    with live_server(tmp_path / "data", env=ENV, own_group=True) as server:
        runs = [httpx.post(f"{server.url}/api/runs", json={"config": SHORT}).json() for _ in range(2)]
        for run in runs:
            wait_for(lambda: status_of(server, run["id"])["step"] > 700)
        workers = [status_of(server, run["id"])["worker"]["pid"] for run in runs]
        os.killpg(server.process.pid, signal.SIGINT)
        server.process.wait(timeout=15)
        for pid in workers:
            wait_for(lambda: not alive(pid), timeout=10)  # no training left behind

        server.start()
        for run in runs:
            after = status_of(server, run["id"])
            assert_interrupted(after, "Ctrl-C")
            assert losses(server, run["id"])["steps"][-1] == after["step"] - 1  # checkpointed at its very step
        for run in runs:
            assert httpx.post(f"{server.url}/api/runs/{run['id']}/resume").status_code == 200
        finish_and_compare(server, runs[0]["id"], runs[1]["id"], config=SHORT)


def test_ctrl_c_to_the_process_group_interrupts_a_stacked_sweep_and_it_resumes_exactly(tmp_path):
    sweep = {"config": SHORT, "vary": {"gain": [1.0, 3.0]}}
    env = {**ENV, "BNSCOPE_MAX_RUNS": "1"}  # one slot: the members train stacked, in one worker
    with live_server(tmp_path / "data", env=env, own_group=True) as server:
        made = httpx.post(f"{server.url}/api/sweeps", json=sweep, timeout=30).json()
        for run_id in made["runs"]:
            wait_for(lambda: status_of(server, run_id)["step"] > 700)
        workers = {status_of(server, run_id)["worker"]["pid"] for run_id in made["runs"]}
        assert len(workers) == 1, f"the members train in the workers {workers}, not stacked in one"
        (worker,) = workers
        os.killpg(server.process.pid, signal.SIGINT)
        server.process.wait(timeout=15)
        wait_for(lambda: not alive(worker), timeout=10)

        server.start()
        for run_id in made["runs"]:
            assert_interrupted(status_of(server, run_id), "Ctrl-C to a stacked sweep")
        assert httpx.post(f"{server.url}/api/sweeps/{made['id']}/resume", timeout=30).status_code == 200
        twin = httpx.post(f"{server.url}/api/sweeps", json=sweep, timeout=30).json()  # stacked as well, never stopped
        for run_id in made["runs"] + twin["runs"]:
            wait_for(lambda: status_of(server, run_id)["status"] == "finished", timeout=240)
        for resumed, uninterrupted in zip(made["runs"], twin["runs"]):
            assert losses(server, resumed) == losses(server, uninterrupted), f"member {resumed} did not resume exactly"


def test_sigterm_to_one_worker_interrupts_its_run_alone_and_it_resumes_exactly(tmp_path):
    with live_server(tmp_path / "data", env=ENV) as server:
        # the long run first: the short one is killed soon after its first checkpoint, long before it ends
        other = httpx.post(f"{server.url}/api/runs", json={"config": {**SMALL, "steps": 100_000}}).json()
        wait_for(lambda: status_of(server, other["id"])["step"] > 700)
        victim = httpx.post(f"{server.url}/api/runs", json={"config": SHORT}).json()
        wait_for(lambda: status_of(server, victim["id"])["step"] > 700)
        os.kill(status_of(server, victim["id"])["worker"]["pid"], signal.SIGTERM)
        interrupted = ended(server, victim["id"])
        assert_interrupted(interrupted, "SIGTERM to its worker")
        assert "SIGTERM" in interrupted["message"]
        assert losses(server, victim["id"])["steps"][-1] == interrupted["step"] - 1  # checkpointed at its very step
        before = status_of(server, other["id"])["step"]
        wait_for(lambda: status_of(server, other["id"])["step"] > before + 200)  # the other run trains on
        assert httpx.post(f"{server.url}/api/runs/{victim['id']}/resume").status_code == 200
        httpx.post(f"{server.url}/api/runs/{other['id']}/stop")
        finish_and_compare(server, victim["id"], config=SHORT)


def test_a_default_run_is_made_only_for_an_empty_store(tmp_path):
    with live_server(tmp_path / "data", env={"BNSCOPE_AUTOSTART": "true"}) as server:
        (first,) = httpx.get(f"{server.url}/api/runs").json()
        assert first["name"] == "default"
        server.stop()
        server.start()
        assert [r["id"] for r in httpx.get(f"{server.url}/api/runs").json()] == [first["id"]]
