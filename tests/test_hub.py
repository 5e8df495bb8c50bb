"""The event fan-out: ids, the reconnect ring, bounded queues, JSON for the wire."""

import asyncio
import json

from bnscope import hub
from bnscope.hub import DROPPED, Channel, to_json


def test_events_are_numbered_and_a_reconnect_gets_exactly_what_it_missed():
    channel = Channel()
    ids = [channel.publish({"type": "scalars", "step": i}).id for i in range(5)]
    assert ids == [1, 2, 3, 4, 5]
    assert [m.id for m in channel.since(2)] == [3, 4, 5]
    assert channel.since(5) == []


def test_a_gap_older_than_the_ring_is_reported_not_papered_over(monkeypatch):
    monkeypatch.setattr(hub, "RING_BYTES", 200)
    channel = Channel()
    for i in range(50):
        channel.publish({"type": "scalars", "step": i, "loss": [1.0]})
    assert channel.since(1) is None  # event 2 is gone: the client needs a snapshot
    assert [m.id for m in channel.since(48)] == [49, 50]
    assert sum(len(m.data) for m in channel._ring) <= 200


def test_a_slow_subscriber_is_dropped_and_never_blocks_the_publisher(monkeypatch):
    monkeypatch.setattr(hub, "QUEUE_SIZE", 3)

    async def scenario():
        channel = Channel()
        slow, _ = channel.subscribe(None, asyncio.get_running_loop())
        fast, _ = channel.subscribe(None, asyncio.get_running_loop())
        received = []
        for i in range(10):
            channel.publish({"type": "scalars", "step": i})  # returns at once, whoever listens
            await asyncio.sleep(0)  # the loop delivers
            received.append(await fast.queue.get())
        drained = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
        return received, drained, slow.dropped

    received, drained, dropped = asyncio.run(scenario())
    assert [m.id for m in received] == list(range(1, 11))  # the reading client got everything
    assert dropped and drained[-1] is DROPPED and len(drained) <= 3  # the other one was cut off


def test_non_finite_numbers_become_null_on_the_wire():
    text = to_json({"type": "scalars", "ud": [[float("-inf"), 1.5]], "loss": [float("nan")]})
    assert json.loads(text) == {"type": "scalars", "ud": [[None, 1.5]], "loss": [None]}
