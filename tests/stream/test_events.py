"""The live stream against a real server process: ordered ids that are never reused, every step
exactly once, a reconnect with Last-Event-ID that misses nothing and repeats nothing, and a client
that stops reading dropped without a gap."""

import json

import httpx
import pytest

from bench.hostile import sse_events
from tests.servers import SMALL, live_server, wait_for

pytestmark = pytest.mark.slow  # a real `bnscope serve` training runs

TIMEOUT = httpx.Timeout(10, read=20)
LONG = {**SMALL, "steps": 10_000_000}


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


def ids_of(events: list[dict]) -> list[int]:
    return [int(e["id"]) for e in events]


def test_reconnecting_with_last_event_id_misses_nothing(server):
    run = httpx.post(f"{server.url}/api/runs", json={"config": LONG}).json()
    url = f"{server.url}/api/runs/{run['id']}/events?after=0"
    first = read(url, 30)
    ids = ids_of(first)
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # every event, in order, from the start
    statuses = [json.loads(e["data"])["status"] for e in first if e["event"] == "status"]
    assert statuses[:3] == ["queued", "created", "running"]
    # disconnect, let the run go on, come back with Last-Event-ID
    second = read(f"{server.url}/api/runs/{run['id']}/events", 30, headers={"Last-Event-ID": str(ids[-1])})
    assert int(second[0]["id"]) == ids[-1] + 1
    steps = loss_steps(first + second)
    assert steps == list(range(len(steps)))  # every training step exactly once, no gap, no repeat
    assert {"model", "status", "scalars", "stats"} <= {e["event"] for e in first + second}
    stats = json.loads(next(e["data"] for e in first + second if e["event"] == "stats"))
    assert len(stats["activations"]) == SMALL["n_layers"]
    assert stats["points"]["saturation/tanh1"]["steps"] == [stats["step"]]  # the series points come with the event
    scalars = json.loads(next(e["data"] for e in first + second if e["event"] == "scalars"))
    assert scalars["run"]["step"] == scalars["step"] + len(scalars["loss"])  # and the run's state after it
    httpx.post(f"{server.url}/api/runs/{run['id']}/stop")


def test_a_gap_older_than_the_ring_gets_a_reset_and_history_has_it(server):
    run = httpx.post(f"{server.url}/api/runs", json={"config": SMALL}).json()
    url = f"{server.url}/api/runs/{run['id']}"
    wait_for(lambda: httpx.get(url).json()["status"] == "finished")
    # after a restart the ring of recent events starts empty: event 1 can only come from the store
    server.stop()
    server.start()
    events = read(f"{url}/events", 1, headers={"Last-Event-ID": "1"})
    assert events[0]["event"] == "reset"
    reset = json.loads(events[0]["data"])
    assert reset == {"type": "reset", "after": int(events[0]["id"])}
    history = httpx.get(f"{url}/history").json()  # what the reset sends the client to read
    assert history["last_event_id"] <= reset["after"]
    assert len(history["series"]["loss"]["steps"]) == SMALL["steps"]
    # a stream after the history's id goes on without another reset: a finished run sends nothing more
    with httpx.stream("GET", f"{url}/events?after={history['last_event_id']}", timeout=3) as response:
        with pytest.raises(httpx.ReadTimeout):
            next(sse_events(response))


def test_a_reset_while_training_is_followed_by_every_later_event_once(server):
    run = httpx.post(f"{server.url}/api/runs", json={"config": LONG}).json()
    url = f"{server.url}/api/runs/{run['id']}"
    wait_for(lambda: httpx.get(url).json()["step"] > 500)
    server.stop()  # the run is interrupted, then resumed: its ring starts empty
    server.start()
    httpx.post(f"{url}/resume")
    wait_for(lambda: httpx.get(url).json()["status"] == "running")
    events = read(f"{url}/events", 60, headers={"Last-Event-ID": "1"})
    assert events[0]["event"] == "reset"
    after = json.loads(events[0]["data"])["after"]
    later = ids_of(events[1:])
    assert later == list(range(after + 1, after + 1 + len(later)))  # complete from `after` on, none twice


def test_ids_keep_increasing_across_a_server_killed_with_sigkill(tmp_path):
    env = {"BNSCOPE_AUTOSTART": "false", "BNSCOPE_CHECKPOINT_EVERY": "500"}
    with live_server(tmp_path / "data", env=env) as server:
        run = httpx.post(f"{server.url}/api/runs", json={"config": LONG}).json()
        url = f"{server.url}/api/runs/{run['id']}"
        seen = ids_of(read(f"{url}/events?after=0", 80))  # the client got these; the store may lag them
        server.stop(kill=True)
        server.start()
        assert httpx.post(f"{url}/resume").status_code == 200
        # a client arriving now gets a reset (the store keeps what came before), then the events since the restart
        new = ids_of([e for e in read(f"{url}/events?after=0", 20) if e["event"] != "reset"])
        again = sorted(set(new) & set(seen))
        assert not again, f"ids a client saw before the SIGKILL came again, for other events: {again}"
        assert new[0] > seen[-1], f"ids after the restart begin at {new[0]}, below {seen[-1]} a client already saw"
        # the client that was there resumes after its last id, and misses nothing made since the restart
        after = read(f"{url}/events", 20, headers={"Last-Event-ID": str(seen[-1])})
        assert all(int(e["id"]) > seen[-1] for e in after)  # never an id the client already holds
        statuses = [json.loads(e["data"]).get("status") for e in after if e["event"] == "status"]
        assert "running" in statuses  # the resume's own status reaches a client that was there before
        httpx.post(f"{url}/stop")


def test_a_client_that_stops_reading_is_dropped_and_resumes_without_a_gap(tmp_path):
    env = {"BNSCOPE_AUTOSTART": "false", "BNSCOPE_STREAM_QUEUE_SECONDS": "1", "BNSCOPE_STREAM_QUEUE_BYTES": "65536"}
    with live_server(tmp_path / "data", env=env) as server:
        run = httpx.post(f"{server.url}/api/runs", json={"config": {**LONG, "stats_every": 1}}).json()
        url = f"{server.url}/api/runs/{run['id']}"
        wait_for(lambda: httpx.get(url).json()["status"] == "running")
        with httpx.stream("GET", f"{url}/events?after=0", timeout=TIMEOUT) as response:
            # not reading: the socket buffers fill, then the server's queue for it passes its bounds
            wait_for(lambda: httpx.get(f"{server.url}/healthz").json()["streams"] == 0, timeout=120, every=0.5)
            seen = []
            try:  # it wakes up: what was sent before the drop, then a reset mid-response (as a browser sees it)
                seen.extend(sse_events(response))
            except (httpx.RemoteProtocolError, httpx.ReadError):
                pass
        ids = ids_of(seen)
        assert ids == list(range(1, len(ids) + 1))  # nothing lost before the drop either
        resumed = read(f"{url}/events", 5, headers={"Last-Event-ID": str(ids[-1])})
        if resumed[0]["event"] == "reset":  # older than the ring: /history up to `after`, then every event on
            after = json.loads(resumed[0]["data"])["after"]
            assert int(resumed[0]["id"]) == after >= ids[-1]
            assert ids_of(resumed[1:]) == list(range(after + 1, after + len(resumed)))
        else:  # from the ring: the very next id
            assert ids_of(resumed) == list(range(ids[-1] + 1, ids[-1] + 6))
        httpx.post(f"{url}/stop")
