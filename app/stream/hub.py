"""Fan-out of a run's events to live clients, never waiting for any of them.

Each run has a Channel: events get strictly increasing ids, a ring of the most recent ones serves
reconnects (`Last-Event-ID`), and every subscriber has a queue bounded by bytes and by age. The
server's thread for the run publishes; a subscriber that falls behind either bound is dropped (its
stream ends, the browser reconnects with Last-Event-ID and gets the rest from the ring), so a slow
client never slows training or the other clients.

Ids are never reused, across crashes too: a channel reserves them in blocks (`reserve` writes the
new ceiling to the store before any id of the block is sent), and after a restart it starts above
the last ceiling. A client whose last id falls in the gap that leaves has missed nothing that still
exists: the events it saw but the store lost are trained again, under new ids.
"""

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

RING_BYTES = 8 * 2**20  # recent events kept for reconnecting clients (a minute or more of a run)
QUEUE_BYTES = 4 * 2**20  # what a client may fall behind by before it is dropped (default)...
QUEUE_SECONDS = 10.0  # ...or for how long it may take nothing while events wait for it (default)
ID_BLOCK = 1000  # ids reserved in the store at a time (one small write every ~1,000 events)


@dataclass(frozen=True)
class Message:
    id: int
    type: str
    data: str  # the event as JSON, serialised once for every client

    @cached_property
    def wire(self) -> bytes:
        """The event as a Server-Sent Events frame: framed once, the same bytes for every client."""
        return f"id: {self.id}\nevent: {self.type}\ndata: {self.data}\n\n".encode()


@dataclass(eq=False)
class Subscriber:
    """One client's queue, used on the event loop only (offer arrives via call_soon_threadsafe)."""

    loop: asyncio.AbstractEventLoop
    max_bytes: int = QUEUE_BYTES
    max_seconds: float = QUEUE_SECONDS
    queue: deque = field(default_factory=deque)  # (message, enqueued at)
    queued_bytes: int = 0
    progressed: float = field(default_factory=time.monotonic)  # when its socket last took something
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, message: Message) -> None:
        """Enqueue, or drop this subscriber once it is too far behind: by bytes, or when events have
        waited for it for max_seconds while its socket took nothing (a stalled client; a slow one that
        still reads, say through a long replay, is kept). Nothing is thrown out of the queue: the client
        resumes by its last id."""
        if self.dropped.is_set():
            return
        now = time.monotonic()
        stalled = self.queue and now - max(self.queue[0][1], self.progressed) > self.max_seconds
        if stalled or self.queued_bytes + len(message.data) > self.max_bytes:
            self.dropped.set()
            return
        self.queue.append((message, now))
        self.queued_bytes += len(message.data)
        self.ready.set()

    def sent(self) -> None:
        """Its socket took a frame (called by the stream after each send)."""
        self.progressed = time.monotonic()

    async def next(self) -> Message:
        while not self.queue:
            self.ready.clear()
            await self.ready.wait()
        message, _ = self.queue.popleft()
        self.queued_bytes -= len(message.data)
        return message


class Channel:
    def __init__(self, last_id: int = 0, stored_id: int | None = None, reserve: Callable[[int], None] | None = None):
        """`last_id`: ids below it are taken (the store's reserved ceiling after a restart); `stored_id`:
        the last id the store holds (events above it and up to last_id were lost or never sent)."""
        self._lock = threading.Lock()
        self._ring: deque[Message] = deque()
        self._ring_bytes = 0
        self._subscribers: set[Subscriber] = set()
        self.last_id = last_id
        self._session_floor = last_id  # this session's first id is last_id + 1
        self._stored_id = last_id if stored_id is None else stored_id
        self._reserve = reserve
        self._reserved = last_id

    def publish(self, event_type: str, data: str) -> Message:
        """From any thread: number the JSON text of an event and hand it to every subscriber."""
        with self._lock:
            if self._reserve is not None and self.last_id >= self._reserved:
                self._reserved = self.last_id + ID_BLOCK
                self._reserve(self._reserved)  # durable before any id of the block leaves
            self.last_id += 1
            message = Message(self.last_id, event_type, data)
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

    def subscribe(
        self, after: int | None, loop: asyncio.AbstractEventLoop, **bounds
    ) -> tuple[Subscriber, list[Message] | None]:
        """A new subscriber (`bounds`: max_bytes, max_seconds of its queue) and the backlog after event id
        `after` (None: from now on). The backlog is None when some events after `after` are no longer
        held: send a reset."""
        sub = Subscriber(loop, **bounds)
        with self._lock:
            self._subscribers.add(sub)
            return sub, [] if after is None else self._since(after)

    def held(self) -> list[Message]:
        """Every event the ring holds: complete from its first id on."""
        with self._lock:
            return list(self._ring)

    def since(self, after: int) -> list[Message] | None:
        with self._lock:
            return self._since(after)

    def _since(self, after: int) -> list[Message] | None:
        if after >= self.last_id:
            return []
        if self._ring and self._ring[0].id <= after + 1:
            return [m for m in self._ring if m.id > after]
        # after a restart: a client that has all the store held has all that still exists
        whole_session = not self._ring or self._ring[0].id == self._session_floor + 1
        if self._stored_id <= after <= self._session_floor and whole_session:
            return list(self._ring)
        return None

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
