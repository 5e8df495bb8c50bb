"""Reads of a training run answer what the store holds without waiting for its writer, and the run's stream
has the rest: a history and the stream after its event id hold every step exactly once, and the newest
statistics the stream sent are what /stats answers for their step, before they are stored."""

import json

import httpx
import pytest

from bench.hostile import sse_events
from tests.servers import SMALL, wait_for

pytestmark = pytest.mark.slow  # a real `bnscope serve` training runs

LONG = {**SMALL, "steps": 10_000_000}
TIMEOUT = httpx.Timeout(10, read=20)


def test_a_history_and_the_stream_after_it_hold_every_step_once(server):
    run = httpx.post(f"{server.url}/api/runs", json={"config": LONG}).json()
    url = f"{server.url}/api/runs/{run['id']}"
    wait_for(lambda: httpx.get(url).json()["step"] > 300)
    history = httpx.get(f"{url}/history", params={"max_points": 10_000}).json()
    stored = history["series"].get("loss", {"steps": []})["steps"]  # the writer may not have written any yet
    assert stored == list(range(history["run"]["step"]))  # its state is the stored one: as far as its series
    steps = []
    with httpx.stream("GET", f"{url}/events", params={"after": history["last_event_id"]}, timeout=TIMEOUT) as response:
        for event in sse_events(response):
            assert event["event"] != "reset"  # the writer is a second behind: the ring holds the rest
            if event["event"] == "scalars":
                data = json.loads(event["data"])
                steps += range(data["step"], data["step"] + len(data["loss"]))
            if len(steps) > 500:
                break
    assert stored + steps == list(range(len(stored) + len(steps)))  # no gap, no repeat
    httpx.post(f"{url}/stop")


def test_stats_at_the_newest_step_are_the_ones_just_streamed(server):
    run = httpx.post(f"{server.url}/api/runs", json={"config": LONG}).json()
    url = f"{server.url}/api/runs/{run['id']}"
    wait_for(lambda: httpx.get(url).json()["status"] == "running")
    after = httpx.get(url).json()["last_event_id"]
    with httpx.stream("GET", f"{url}/events", params={"after": after}, timeout=TIMEOUT) as response:
        streamed = next(json.loads(e["data"]) for e in sse_events(response) if e["event"] == "stats")
        answered = httpx.get(f"{url}/stats", params={"step": streamed["step"] + 1}).json()  # while it streams on
    assert answered["step"] == streamed["step"] and answered["activations"] == streamed["activations"]
    httpx.post(f"{url}/stop")
