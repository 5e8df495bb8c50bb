"""The HTTP server side of `bnscope serve`: uvicorn's h11 protocol with bounds no client can stretch,
and a log configuration that sends bnscope's own log to stderr beside uvicorn's.

uvicorn itself times out only idle keep-alive connections. Here, besides:
  - a request head must be whole `header_timeout_s` after the connection opens (or after the first
    byte of the next request on a kept-alive connection), else the connection is closed (slow loris);
  - a request body must be whole `body_timeout_s` after its head, else the connection is cut;
  - a response whose client takes nothing of it for `send_timeout_s` is cut: its unsent bytes do not
    shrink while the app cannot add to them (writing is paused, over uvicorn's high-water mark of
    64 KiB, or the connection is closing). So, at once, is a response the app gave up on midway while
    bytes of it still wait (an event stream whose client fell behind): a graceful close would wait for
    ever on a client that does not read, holding the socket and megabytes of kernel buffer. Unsent
    bytes are looked at every WATCH_EVERY_S, so a cut comes at most that much later;
  - connections held at once are capped overall and per client address (api/limits.py): past a cap
    the connection's request is answered 503 or 429 with Retry-After, and the connection closed; past
    twice the overall cap a new connection is cut at once, unanswered.
A cut is an abort with SO_LINGER 0: the kernel frees the socket and its buffers at once, and the
client sees a reset (after the bytes that had reached it).
"""

import asyncio
import copy
import socket
import struct
from contextlib import suppress

import h11
from starlette.types import ASGIApp
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.h11_impl import H11Protocol

from bnscope.api.errors import TooManyRequests, refusal
from bnscope.api.limits import Slots
from bnscope.config import Settings

LOG_CONFIG = copy.deepcopy(LOGGING_CONFIG)
LOG_CONFIG["loggers"]["bnscope"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
WATCH_EVERY_S = 1.0
NO_LINGER = struct.pack("ii", 1, 0)  # l_onoff 1, l_linger 0: close() resets and drops what is unsent


def _refused(exc: TooManyRequests) -> ASGIApp:
    response = refusal(exc)
    response.headers["connection"] = "close"
    return response


class BoundedProtocol(H11Protocol):
    """uvicorn's h11 protocol with the bounds above; `bounded_protocol` makes one for a server."""

    settings: Settings
    slots: Slots  # the server's connections
    _address: str | None = None  # the client address whose slot this connection holds
    _read_timer: asyncio.TimerHandle | None = None
    _reading: object = None  # what the read timer waits for: h11.IDLE (a head) or h11.SEND_BODY
    _write_timer: asyncio.TimerHandle | None = None
    _unsent = 0  # bytes waiting to be sent at the last look
    _progress = 0.0  # when they last went down (or there were none)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > 2 * self.slots.total:
            return self._cut()
        address = self.client[0] if self.client else ""
        refused = self.slots.take(address)
        if refused is None:
            self._address = address
        else:
            self.app = _refused(refused)  # uvicorn answers this connection's request with it
        self._progress = self.loop.time()
        self._watch_request()
        self._write_timer = self.loop.call_later(WATCH_EVERY_S, self._watch_writes)

    def data_received(self, data: bytes) -> None:
        self._watch_request()  # the first byte of a request starts its head's clock
        super().data_received(data)
        self._watch_request()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            self._no_linger()  # a response left unfinished: what the kernel still holds of it is dropped
        for timer in (self._read_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        if self._address is not None:
            self.slots.give_back(self._address)
            self._address = None
        super().connection_lost(exc)

    def _watch_request(self) -> None:
        """Time what the client is sending now: a head (IDLE: h11 has no whole head yet) or a body.
        The clock runs from the first wait, not the last byte."""
        state = self.conn.their_state
        if state is self._reading:
            return
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer, self._reading = None, None
        if state is h11.IDLE or state is h11.SEND_BODY:
            timeout = self.settings.header_timeout_s if state is h11.IDLE else self.settings.body_timeout_s
            self._read_timer = self.loop.call_later(timeout, self._read_timed_out)
            self._reading = state

    def _read_timed_out(self) -> None:
        self._read_timer, self._reading = None, None
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.IDLE:
            self.transport.close()  # nothing of it was taken: a plain close
        elif self.conn.their_state is h11.SEND_BODY:
            self._cut()  # the app is reading the body: it sees the client leave

    def _watch_writes(self) -> None:
        unsent, now = self.transport.get_write_buffer_size(), self.loop.time()
        # judged only while the app cannot add bytes (it waits for room, or the connection closes): then a
        # buffer that does not shrink is a client that takes nothing
        judged = self.flow.write_paused or self.transport.is_closing()
        if not judged or unsent == 0 or unsent < self._unsent:
            self._progress = now
        self._unsent = unsent
        abandoned = self.transport.is_closing() and self.cycle is not None and not self.cycle.response_complete
        if unsent and (abandoned or now - self._progress >= self.settings.send_timeout_s):
            self._cut()
        else:
            self._write_timer = self.loop.call_later(WATCH_EVERY_S, self._watch_writes)

    def _cut(self) -> None:
        self._no_linger()
        self.transport.abort()

    def _no_linger(self) -> None:
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with suppress(OSError):  # the client may have reset it first
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, NO_LINGER)


def bounded_protocol(settings: Settings) -> type[BoundedProtocol]:
    """The protocol class for `uvicorn.Config(http=...)`, which takes a class, not an instance: a class
    of its own for each server, holding that server's settings and count of connections."""
    slots = Slots("connections", settings.max_connections, settings.max_connections_per_address)
    return type("BoundedProtocol", (BoundedProtocol,), {"settings": settings, "slots": slots})
