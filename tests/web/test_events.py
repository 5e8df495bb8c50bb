"""The live stream against a real server process: ordered ids, every step exactly once, and a
reconnect with Last-Event-ID that misses nothing."""

import json

import httpx

from tests.web.conftest import SMALL, sse_events, wait_for

TIMEOUT = httpx.Timeout(10, read=20)


def read(url: str, count: int, headers: dict | None = None) -> list[dict]:
    with httpx.stream("GET", url, headers=headers or {}, timeout=TIMEOUT) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = []
        for event in sse_events(response):
            events.append(event)
            if len(events) == count:
                return events
    raise AssertionError(f"stream ended after {len(events)} events")


def loss_steps(events: list[dict]) -> list[int]:
    steps = []
    for event in events:
        if event["event"] == "scalars":
            data = json.loads(event["data"])
            steps += range(data["step"], data["step"] + len(data["loss"]))
    return steps


def test_reconnecting_with_last_event_id_misses_nothing(server):
    run = httpx.post(f"{server.url}/api/runs", json={"config": {**SMALL, "steps": 100_000}}).json()
    url = f"{server.url}/api/runs/{run['id']}/events?after=0"
    first = read(url, 30)
    ids = [int(e["id"]) for e in first]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # every event, in order, from the start
    assert ids[0] == 1 and json.loads(first[0]["data"])["status"] == "running"
    # disconnect, let the run go on, come back with Last-Event-ID
    second = read(f"{server.url}/api/runs/{run['id']}/events", 30, headers={"Last-Event-ID": str(ids[-1])})
    assert int(second[0]["id"]) == ids[-1] + 1
    steps = loss_steps(first + second)
    assert steps == list(range(len(steps)))  # every training step exactly once, no gap, no repeat
    kinds = {e["event"] for e in first + second}
    assert {"status", "scalars", "stats"} <= kinds
    stats = json.loads(next(e["data"] for e in first + second if e["event"] == "stats"))
    assert len(stats["layers"]) == SMALL["n_layers"]
    httpx.post(f"{server.url}/api/runs/{run['id']}/stop")


def test_a_gap_older_than_the_ring_gets_a_snapshot(server):
    run = httpx.post(f"{server.url}/api/runs", json={"config": SMALL}).json()
    url = f"{server.url}/api/runs/{run['id']}"
    wait_for(lambda: httpx.get(url).json()["status"] == "finished")
    # after a restart the ring of recent events starts empty: event 1 can only come from the store
    server.stop()
    server.start()
    events = read(f"{url}/events", 1, headers={"Last-Event-ID": "1"})
    assert events[0]["event"] == "snapshot"
    snapshot = json.loads(events[0]["data"])
    assert snapshot["run"]["status"] == "finished"
    assert len(snapshot["series"]["loss"]["steps"]) == SMALL["steps"]
    assert int(events[0]["id"]) == snapshot["last_event_id"]
