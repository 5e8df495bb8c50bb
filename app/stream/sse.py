"""A run's Server-Sent Events response: one subscriber's frames (bnscope.stream.hub) written to one client
until it leaves, falls too far behind, or the server stops. The route (bnscope.api.routes.events) picks
what to send; this writes it."""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from bnscope.stream.hub import Subscriber


class _DroppedOnPurpose(logging.Filter):
    """A stream cut because its client stopped reading ends mid-response on purpose: not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


logging.getLogger("uvicorn.error").addFilter(_DroppedOnPurpose())


class EventStream(Response):
    """An endless text/event-stream for one subscriber. It ends when the client leaves, when the client
    falls too far behind (the subscriber is dropped: even a send blocked on a full socket is cut, and
    the HTTP protocol then resets the connection), or when the server stops. `release` is called once
    it has ended."""

    media_type = "text/event-stream"

    def __init__(
        self, frames: AsyncIterator[bytes], subscriber: Subscriber, stopping: asyncio.Event, release: Callable[[], None]
    ):
        super().__init__(headers={"cache-control": "no-cache", "x-accel-buffering": "no"})
        # Starlette declares `content-length: 0` for a response built without a body: the first frame
        # would then break HTTP framing and uvicorn cuts the stream at once
        self.raw_headers = [(name, value) for name, value in self.raw_headers if name != b"content-length"]
        self.frames, self.subscriber, self.stopping, self.release = frames, subscriber, stopping, release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._stream(receive, send)
        finally:
            self.release()

    async def _stream(self, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})

        async def pump() -> None:
            async for frame in self.frames:
                await send({"type": "http.response.body", "body": frame, "more_body": True})
                self.subscriber.sent()
                # a send into a socket with room never yields: without this a long backlog holds the
                # loop, and a client that has gone is only noticed once its whole queue was written
                await asyncio.sleep(0)

        async def client_left() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        waits = (pump(), client_left(), self.subscriber.dropped.wait(), self.stopping.wait())
        tasks = [asyncio.ensure_future(wait) for wait in waits]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.frames.aclose()  # unsubscribes, even when the pump was cut inside a send
        if not self.subscriber.dropped.is_set():  # a clean end; a dropped client's socket may be full
            try:
                await asyncio.wait_for(send({"type": "http.response.body", "body": b"", "more_body": False}), 1.0)
            except (TimeoutError, OSError):
                pass
