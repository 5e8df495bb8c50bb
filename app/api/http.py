"""The HTTP server side of `bnscope serve`: uvicorn's h11 protocol with a time limit on request
heads, and a log configuration that sends bnscope's own log to stderr beside uvicorn's.

uvicorn times out only idle keep-alive connections: a client that connects and sends its request
line and headers a byte at a time (slow loris) would hold its connection, and its memory, forever.
"""

import asyncio
import copy

import h11
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.h11_impl import H11Protocol

LOG_CONFIG = copy.deepcopy(LOGGING_CONFIG)
LOG_CONFIG["loggers"]["bnscope"] = {"handlers": ["default"], "level": "INFO", "propagate": False}


class HeadTimeoutProtocol(H11Protocol):
    """Closes a connection whose request head is not complete `head_timeout_s` after the connection
    opens, or after the first byte of the next request on a kept-alive connection."""

    head_timeout_s = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        self._await_head()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # a whole head arrived (or a broken one, answered 400)
            self._stop_waiting()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        # IDLE: h11 has no complete request head yet; the timer runs from the first wait, not the last byte
        if self._head_timer is None and self.conn.their_state is h11.IDLE:
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _stop_waiting(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def head_timeout_protocol(timeout_s: float) -> type[HeadTimeoutProtocol]:
    """The protocol class for `uvicorn.Config(http=...)`, which takes a class, not an instance."""
    return type("HeadTimeoutProtocol", (HeadTimeoutProtocol,), {"head_timeout_s": timeout_s})
