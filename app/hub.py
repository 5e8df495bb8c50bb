"""Fan-out of a run's events to live clients, never waiting for any of them.

Each run has a Channel: events get increasing ids, a ring of the most recent ones serves
reconnects (`Last-Event-ID`), and every subscriber has a bounded queue. The training thread
publishes; a subscriber whose queue is full is dropped (its stream ends and the browser
reconnects with Last-Event-ID), so a slow client never slows training or the other clients.
"""

import asyncio
import json
import math
import threading
from collections import deque
from dataclasses import dataclass, field
from functools import cached_property

RING_BYTES = 8 * 2**20  # recent events kept for reconnecting clients (a minute or more of a run)
QUEUE_SIZE = 256  # events a client may fall behind before it is dropped


def to_json(event: dict) -> str:
    """JSON text for the wire; non-finite floats (a diverging run) become null."""
    try:
        return json.dumps(event, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(event), separators=(",", ":"))


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


@dataclass(frozen=True)
class Message:
    id: int
    type: str
    data: str  # the event as JSON, serialised once for every client

    @cached_property
    def wire(self) -> bytes:
        """The event as a Server-Sent Events frame: framed once, the same bytes for every client."""
        return f"id: {self.id}\nevent: {self.type}\ndata: {self.data}\n\n".encode()


DROPPED = Message(-1, "dropped", "")


@dataclass(eq=False)
class Subscriber:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    dropped: bool = False

    def offer(self, message: Message) -> None:
        """On the event loop: enqueue, or drop this subscriber when it has fallen too far behind."""
        if self.dropped:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped = True
            self.queue.get_nowait()  # make room for the end-of-stream marker
            self.queue.put_nowait(DROPPED)


class Channel:
    def __init__(self, last_id: int = 0):
        self._lock = threading.Lock()
        self._ring: deque[Message] = deque()
        self._ring_bytes = 0
        self._subscribers: set[Subscriber] = set()
        self.last_id = last_id

    def publish(self, event: dict) -> Message:
        """From any thread. Returns the numbered message."""
        data = to_json(event)
        with self._lock:
            self.last_id += 1
            message = Message(self.last_id, event["type"], data)
            self._ring.append(message)
            self._ring_bytes += len(data)
            while self._ring_bytes > RING_BYTES:  # bounded by size: stats events are 100x a scalars event
                self._ring_bytes -= len(self._ring.popleft().data)
            subscribers = list(self._subscribers)
        for sub in subscribers:
            try:
                sub.loop.call_soon_threadsafe(sub.offer, message)
            except RuntimeError:  # its event loop is closed: the client is gone
                self.unsubscribe(sub)
        return message

    def subscribe(self, after: int | None, loop: asyncio.AbstractEventLoop) -> tuple[Subscriber, list[Message] | None]:
        """A new subscriber and the backlog after event id `after` (None: from now on). The
        backlog is None when `after` is older than the ring: the client needs a fresh snapshot."""
        sub = Subscriber(loop)
        with self._lock:
            self._subscribers.add(sub)
            return sub, [] if after is None else self._since(after)

    def since(self, after: int) -> list[Message] | None:
        with self._lock:
            return self._since(after)

    def _since(self, after: int) -> list[Message] | None:
        """Ring messages after `after`, or None if some of them are no longer in the ring."""
        if after >= self.last_id:
            return []
        if self._ring and self._ring[0].id <= after + 1:
            return [m for m in self._ring if m.id > after]
        return None

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(sub)
