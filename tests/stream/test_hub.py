"""The event fan-out: ids (never reused), the reconnect ring and its boundaries, bounded queues, JSON."""

import asyncio
import json

import pytest

from bnscope.stream import hub
from bnscope.stream.hub import Channel
from bnscope.jsonenc import to_json


def publish(channel: Channel, step: int, payload: str = "") -> int:
    return channel.publish("scalars", json.dumps({"type": "scalars", "step": step, "pad": payload})).id


def test_events_are_numbered_and_a_reconnect_gets_exactly_what_it_missed():
    channel = Channel()
    ids = [publish(channel, i) for i in range(5)]
    assert ids == [1, 2, 3, 4, 5]
    assert [m.id for m in channel.since(2)] == [3, 4, 5]
    assert [m.id for m in channel.since(0)] == [1, 2, 3, 4, 5]
    assert channel.since(5) == []


def test_the_ring_boundary_is_exact(monkeypatch):
    """A client that saw event k needs k+1 on: served while k+1 is in the ring, a snapshot one earlier."""
    monkeypatch.setattr(hub, "RING_BYTES", 400)
    channel = Channel()
    for i in range(50):
        publish(channel, i, "x" * 20)
    oldest = channel._ring[0].id
    assert sum(len(m.data) for m in channel._ring) <= 400
    assert [m.id for m in channel.since(oldest - 1)] == list(range(oldest, 51))  # it has everything it needs
    assert channel.since(oldest - 2) is None  # event oldest-1 is gone: snapshot, never a silent gap


def test_ids_are_reserved_in_blocks_before_they_are_used_and_never_reused_after_a_restart():
    reserved = []
    channel = Channel(reserve=reserved.append)
    for i in range(hub.ID_BLOCK + 5):
        publish(channel, i)
    assert reserved == [hub.ID_BLOCK, 2 * hub.ID_BLOCK]  # each block written before its first id went out
    # a crash: the store saved up to id 700, but ids up to the last ceiling may have reached clients
    restarted = Channel(last_id=reserved[-1], stored_id=700, reserve=reserved.append)
    first = publish(restarted, 0)
    assert first == reserved[-2] + 1 and first > hub.ID_BLOCK + 5


def test_after_a_restart_a_client_with_everything_stored_continues_without_a_snapshot():
    channel = Channel(last_id=2000, stored_id=1179)
    ids = [publish(channel, i) for i in range(3)]
    assert ids == [2001, 2002, 2003]
    assert [m.id for m in channel.since(1179)] == ids  # it has all the store held: the rest is new
    assert [m.id for m in channel.since(1500)] == ids  # it saw events the store lost: they are retrained, as new ids
    assert channel.since(1000) is None  # it missed stored events: snapshot


def test_a_stalled_subscriber_is_dropped_by_bytes_and_loses_nothing():
    async def scenario():
        channel = Channel()
        loop = asyncio.get_running_loop()
        stalled, _ = channel.subscribe(None, loop, max_bytes=1000)
        reading, _ = channel.subscribe(None, loop)
        received = []
        for i in range(40):
            publish(channel, i, "x" * 50)  # returns at once, whoever listens
            await asyncio.sleep(0)  # the loop delivers
            received.append((await reading.next()).id)
        return received, stalled

    received, stalled = asyncio.run(scenario())
    assert received == list(range(1, 41))  # the reading client got everything
    assert stalled.dropped.is_set()
    kept = [m.id for m, _ in stalled.queue]
    assert kept == list(range(1, len(kept) + 1)) and stalled.queued_bytes <= 1000  # nothing thrown out of the middle


def test_a_stalled_subscriber_is_dropped_by_age_but_a_slow_one_that_reads_is_kept():
    async def scenario():
        channel = Channel()
        loop = asyncio.get_running_loop()
        stalled, _ = channel.subscribe(None, loop, max_seconds=0.05)
        slow, _ = channel.subscribe(None, loop, max_seconds=0.05)
        for step in range(6):
            publish(channel, step)
            await asyncio.sleep(0.03)
            slow.sent()  # its socket takes a frame now and then, behind as it is
        return stalled, slow

    stalled, slow = asyncio.run(scenario())
    assert stalled.dropped.is_set() and not slow.dropped.is_set() and len(slow.queue) == 6


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_become_null_on_the_wire(value):
    text = to_json({"type": "scalars", "ud": [[value, 1.5]], "loss": [value]})
    assert json.loads(text) == {"type": "scalars", "ud": [[None, 1.5]], "loss": [None]}
