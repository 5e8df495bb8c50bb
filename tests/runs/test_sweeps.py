"""Sweeps against a real server: a gain x BatchNorm grid of 10 is one request, and every member trains
within seconds of it, in lockstep, while one member is paused or stopped; a killed server's sweep
resumes as a whole, each member from its checkpoint, its history without a gap."""

import os
import signal
import time

import httpx
import pytest

from tests.servers import SMALL, live_server, wait_for

pytestmark = pytest.mark.slow  # a real `bnscope serve` training runs

GRID = {"gain": [0.5, 1.0, 5 / 3, 3.0, 5.0], "batchnorm": [True, False]}
ENV = {"BNSCOPE_AUTOSTART": "false", "BNSCOPE_CHECKPOINT_EVERY": "500"}


def runs_of(server, ids) -> list[dict]:
    every = {r["id"]: r for r in httpx.get(f"{server.url}/api/runs", timeout=10).json()}
    return [every[i] for i in ids]


def test_a_grid_of_ten_trains_at_once_in_lockstep(tmp_path):
    config = {**SMALL, "steps": 1_000_000, "stats_every": 100, "dev_every": 100_000}
    with live_server(tmp_path / "data", env=ENV) as server:
        made = time.monotonic()
        answer = httpx.post(f"{server.url}/api/sweeps", json={"config": config, "vary": GRID}, timeout=30)
        assert answer.status_code == 201, answer.text
        ids = answer.json()["runs"]
        assert len(ids) == 10
        wait_for(lambda: all(r["status"] == "running" and r["step"] > 0 for r in runs_of(server, ids)), timeout=30)
        started = time.monotonic() - made
        members = runs_of(server, ids)
        assert {(r["config"]["gain"], r["config"]["batchnorm"]) for r in members} == {
            (g, bn) for g in GRID["gain"] for bn in GRID["batchnorm"]
        }
        assert len({r["worker"]["pid"] for r in members}) == min(os.cpu_count() or 1, 10)  # a stack a free slot
        spreads = []
        for _ in range(20):
            steps = [r["step"] for r in runs_of(server, ids)]
            spreads.append(max(steps) - min(steps))
            time.sleep(0.25)
        # one statistics interval, and what a flush (0.1 s) of the slowest stack has not reported yet
        assert max(spreads) <= 2 * config["stats_every"], spreads

        # one member paused, another stopped: the rest go on, still together
        paused, stopped, rest = ids[0], ids[1], ids[2:]
        assert httpx.post(f"{server.url}/api/runs/{paused}/pause", timeout=30).json()["status"] == "paused"
        assert httpx.post(f"{server.url}/api/runs/{stopped}/stop", timeout=30).json()["status"] == "stopped"
        before = {r["id"]: r["step"] for r in runs_of(server, ids)}
        wait_for(lambda: all(r["step"] > before[r["id"]] + 500 for r in runs_of(server, rest)), timeout=60)
        now = runs_of(server, ids)
        assert now[0]["step"] == before[paused] and now[1]["step"] == before[stopped]
        steps = [r["step"] for r in now[2:]]
        assert max(steps) - min(steps) <= 2 * config["stats_every"]
        assert httpx.post(f"{server.url}/api/runs/{paused}/resume", timeout=30).json()["status"] == "running"
        print(f"all 10 members training {started:.1f} s after the request; lockstep spread {max(spreads)} steps")


def test_a_killed_servers_sweep_resumes_as_a_whole_without_a_gap(tmp_path):
    config = {**SMALL, "steps": 3000, "stats_every": 100, "dev_every": 1000}
    grid = {"gain": [1.0, 3.0], "batchnorm": [True, False]}
    data = tmp_path / "data"
    with live_server(data, env=ENV) as server:
        sweep = httpx.post(f"{server.url}/api/sweeps", json={"config": config, "vary": grid}, timeout=30).json()
        ids = sweep["runs"]
        wait_for(lambda: all(r["step"] > 1200 for r in runs_of(server, ids)), timeout=60)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=30)
    with live_server(data, env=ENV) as server:
        interrupted = runs_of(server, ids)
        assert [r["status"] for r in interrupted] == ["interrupted"] * 4
        resumed = httpx.post(f"{server.url}/api/sweeps/{sweep['id']}/resume", timeout=30)
        assert resumed.status_code == 200, resumed.text
        assert sorted(r["id"] for r in resumed.json()) == ids
        wait_for(lambda: all(r["status"] == "finished" for r in runs_of(server, ids)), timeout=120, every=0.5)
        for run_id in ids:
            history = httpx.get(f"{server.url}/api/runs/{run_id}/history", params={"max_points": 10_000}).json()
            steps = history["series"]["loss"]["steps"]
            assert steps == list(range(config["steps"])), f"run {run_id}: the loss series has gaps or repeats"
            assert [e["status"] for e in history["timeline"] if e["type"] == "status"][-1] == "finished"
        again = httpx.post(f"{server.url}/api/sweeps/{sweep['id']}/resume", timeout=30)
        assert again.status_code == 409 and "no interrupted member" in again.text


@pytest.mark.parametrize(
    "body, field",
    [
        ({"vary": {"gain": [1, 2], "colour": [1, 2]}}, "colour"),
        ({"vary": {"gain": list(range(1, 17)), "seed": list(range(16)), "lr": [0.1, 0.2]}}, "at most 256"),
    ],
)
def test_a_grid_out_of_bounds_is_refused_naming_vary(client, body, field):
    answer = client.post("/api/sweeps", json=body)
    assert answer.status_code == 422 and field in answer.text and "vary" in answer.text, answer.text
    assert client.get("/api/runs").json() == []
