"""How a watched run's events leave the user's process, without ever holding up its training.

    sender = Sender(HttpSink(url, name, description))   # or StoreSink(data_dir, name, description)
    sender.put(event)        # from the training loop: a list append under a lock, never waits
    summary = sender.close() # sends what is queued (for a while), then says what was dropped

One background thread takes the queued events and hands them to the sink in batches. The queue is
bounded (QUEUE_EVENTS events, of which QUEUE_STATS statistics events, the big ones): when the sink
is slow or away, new events beyond it are dropped and counted. A sink that cannot be reached is
retried with a growing pause, the batch in hand kept; one that refuses (a bad token, a run that is
gone) gets nothing more, and everything after is counted as dropped. Problems are logged once each
(logger "bnscope.watch"), never raised into the training loop.
"""

import json
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path

from bnscope.jsonenc import to_json

log = logging.getLogger("bnscope.watch")

QUEUE_EVENTS = 20_000  # ~20 s of run.log() at 1,000 steps/s
QUEUE_STATS = 64  # statistics events (tens of KiB to MiB each)
BATCH_EVENTS = 1000  # the server's limit a request
BATCH_BYTES = 4 * 2**20  # half the server's 8 MiB limit a request
FLUSH_SECONDS = 0.2  # how long events wait to be sent together
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)  # pauses between tries to reach a sink that is away, then 5 s each
CLOSE_SECONDS = 10.0  # close() waits this long for the queue to drain
HTTP_TIMEOUT = 10.0


class Unreachable(Exception):
    """The sink is away for now (no connection, a timeout, a 5xx): try the same events again later."""


class Refused(Exception):
    """The sink will never take these events (a bad token, a run that is gone): stop sending."""


class Invalid(Exception):
    """The sink refused these events but may take others (an event over the size limit, a name too long)."""


class Sender:
    def __init__(self, sink, start: bool = True):
        self.sink = sink
        self.sent = 0
        self.dropped: dict[str, int] = {}  # why -> how many
        self._queue: deque[dict] = deque()
        self._stats_queued = 0
        self._in_hand = 0  # events taken from the queue and not yet delivered or dropped
        self._lock = threading.Condition()
        self._closing = False
        self._flushing = 0  # flush() calls waiting: a batch being gathered goes at once
        self._refused: str | None = None
        self._deadline = float("inf")
        self._thread = threading.Thread(target=self._loop, name="bnscope-watch-sender", daemon=True)
        if start:
            self._thread.start()

    # ---- the training loop's side -----------------------------------------------------------------
    def put(self, event: dict) -> None:
        """Queue an event, or drop it (counted) when the queue is full, closed or the sink refused."""
        with self._lock:
            if self._refused is not None or self._closing:
                return self._drop("the server refused the run" if self._refused else "sent after close", 1)
            is_stats = event["type"] == "stats"
            if len(self._queue) >= QUEUE_EVENTS or (is_stats and self._stats_queued >= QUEUE_STATS):
                return self._drop("the queue was full (the server slow or away)", 1)
            self._queue.append(event)
            self._stats_queued += is_stats
            if len(self._queue) == 1 or self._stats_queued == QUEUE_STATS // 4:  # see _take
                self._lock.notify()

    def flush(self, timeout: float = CLOSE_SECONDS) -> bool:
        """Wait until every event put so far is delivered (or dropped); False at the timeout."""
        with self._lock:
            self._flushing += 1
            self._lock.notify_all()
            try:
                done = self._lock.wait_for(lambda: not self._queue and not self._in_hand, timeout)
            finally:
                self._flushing -= 1
        return done and self.sink.flush(timeout)

    def close(self, timeout: float = CLOSE_SECONDS) -> dict:
        """Send what is queued, for up to `timeout` seconds; {"sent", "dropped", "dropped_why"} (events)."""
        with self._lock:
            self._closing = True
            self._deadline = time.monotonic() + timeout
            self._lock.notify()
        if self._thread.is_alive():
            self._thread.join(timeout + HTTP_TIMEOUT)
        with self._lock:  # what is still queued (the sink away, or slower than the timeout) is dropped
            if self._queue:
                self._drop("the server was away when the run closed", len(self._queue))
                self._queue.clear()
        return {"sent": self.sent, "dropped": sum(self.dropped.values()), "dropped_why": dict(self.dropped)}

    def _drop(self, why: str, count: int) -> None:
        if why not in self.dropped:
            log.warning("bnscope.watch: dropping events: %s (close() reports how many)", why)
        self.dropped[why] = self.dropped.get(why, 0) + count

    # ---- the sender thread ------------------------------------------------------------------------
    def _take(self) -> list[dict]:
        """Up to BATCH_EVENTS events: waits for the first, then FLUSH_SECONDS for company. [] once closed and empty."""
        with self._lock:
            while not self._queue and not self._closing:
                self._lock.wait()
            if not self._closing:
                # ... or until a quarter of the statistics events the queue holds are waiting: at every=1
                # they come at a rate that would fill it in the time a batch takes to go
                self._lock.wait_for(
                    lambda: (
                        self._closing
                        or self._flushing
                        or len(self._queue) >= BATCH_EVENTS
                        or self._stats_queued >= QUEUE_STATS // 4
                    ),
                    timeout=FLUSH_SECONDS,
                )
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), BATCH_EVENTS))]
            self._in_hand = len(batch)
            self._stats_queued -= sum(e["type"] == "stats" for e in batch)
            if self._closing and time.monotonic() >= self._deadline:  # close() drops what is left
                self._queue.extendleft(reversed(batch))
                self._in_hand = 0
                return []
            return batch

    def _loop(self) -> None:
        opened = False
        while batch := self._take():
            opened = self._deliver(batch, opened)
            with self._lock:
                self._in_hand = 0
                self._lock.notify_all()  # flush() waits for this
        try:
            self.sink.close()  # opened or not: a sink may hold something from its tries (a process)
        except Exception as err:  # noqa: BLE001 - reported, never raised into the user's process
            log.warning("bnscope.watch: closing %s: %s", self.sink, err)

    def _deliver(self, batch: list[dict], opened: bool) -> bool:
        """Send one batch: retried while the sink is away (until close()'s deadline), given up when it
        refuses. Whether the sink is open."""
        tries = 0
        while batch:
            try:
                if not opened:
                    self.sink.open()
                    opened = True
                self._send(batch)
                if tries:
                    log.warning("bnscope.watch: %s is back; sending again", self.sink)
            except Unreachable as err:
                if tries == 0:
                    log.warning(
                        "bnscope.watch: cannot reach %s (%s); training goes on, events wait in a "
                        "bounded queue and are dropped beyond it",
                        self.sink,
                        err,
                    )
                tries += 1
                if not self._pause(RETRY_SECONDS[min(tries, len(RETRY_SECONDS)) - 1]):
                    with self._lock:
                        self._drop("the server was away when the run closed", len(batch))
                    return opened
                self.sink.reconnecting()
            except Refused as err:
                self._refuse(str(err), len(batch))
                return opened
            except Exception as err:  # noqa: BLE001 - a bug here must not end the thread silently with events queued
                self._refuse(f"{type(err).__name__}: {err}", len(batch))
                return opened
        return opened

    def _send(self, batch: list[dict]) -> None:
        """The sink delivers the batch an event at a time, removing each from it once delivered (so a
        retry sends only the rest) or refused as invalid (dropped, counted)."""
        while batch:
            n = len(batch)
            try:
                self.sink.send(batch)
                self.sent += n - len(batch)
            except Invalid as err:
                self.sent += n - len(batch)  # what went before the invalid events
                count = self.sink.discard(batch)
                log.warning("bnscope.watch: %s refused %d events as invalid: %s", self.sink, count, err)
                with self._lock:
                    self._drop("the server found them invalid", count)
            except Unreachable:
                self.sent += n - len(batch)
                raise

    def _pause(self, seconds: float) -> bool:
        """Wait before the next try; False once the run has closed and its close() timeout has passed."""
        end = time.monotonic() + seconds
        with self._lock:
            while True:
                now = time.monotonic()
                if self._closing and now >= self._deadline:
                    return False
                if now >= end:
                    return True
                self._lock.wait(min(end, self._deadline) - now)  # close() notifies: its deadline counts at once

    def _refuse(self, why: str, in_hand: int) -> None:
        log.warning("bnscope.watch: %s refused the run's events: %s; nothing more is sent", self.sink, why)
        with self._lock:
            self._refused = why
            self._drop("the server refused the run", in_hand + len(self._queue))
            self._queue.clear()
            self._stats_queued = 0


# ---- where the events go -----------------------------------------------------------------------------
class HttpSink:
    """A running `bnscope serve`: POST /api/watched once, then POST /api/runs/{id}/ingest batches.
    The token comes from BNSCOPE_TOKEN. After a reconnect, the run is said to be running again (a
    restarted server marks a run it had open as interrupted)."""

    def __init__(self, url: str, name: str, description: dict, token: str | None = None):
        self.url = url.rstrip("/")
        self.name, self.description = name, description
        self.token = token if token is not None else os.environ.get("BNSCOPE_TOKEN")
        self.run_id: int | None = None
        self.step = 0  # the latest step sent: where a reconnect's status goes
        self._reconnected = False
        self._in_flight = 0  # events in the request being sent

    def __str__(self) -> str:
        return self.url

    def open(self) -> None:
        self.run_id = self._post("/api/watched", to_json({"name": self.name, "description": self.description}))["id"]

    def send(self, batch: list[dict]) -> None:
        """POST the batch in requests of at most BATCH_EVENTS events and BATCH_BYTES, removing each
        request's events from it once the server took them."""
        if self._reconnected:
            self._post(self._ingest, to_json({"events": [self._status("running", "reconnected")]}))
            self._reconnected = False
        while batch:
            texts, size = [], 0
            for event in batch[:BATCH_EVENTS]:
                text = to_json(event)
                if texts and size + len(text) > BATCH_BYTES:
                    break
                texts.append(text)
                size += len(text) + 1
            self._in_flight = len(texts)
            self._post(self._ingest, '{"events":[' + ",".join(texts) + "]}")
            self.step = max(self.step, *(e["step"] for e in batch[: len(texts)]))
            del batch[: len(texts)]

    def discard(self, batch: list[dict]) -> int:
        """Drop the request's events the server refused as invalid; how many."""
        n = self._in_flight
        del batch[:n]
        return n

    def reconnecting(self) -> None:
        self._reconnected = self.run_id is not None

    def flush(self, timeout: float) -> bool:
        return True  # delivered is ingested: the server has it

    def close(self) -> None:
        pass

    @property
    def _ingest(self) -> str:
        return f"/api/runs/{self.run_id}/ingest"

    def _status(self, status: str, message: str) -> dict:
        return {"type": "status", "step": self.step, "status": status, "message": message}

    def _post(self, path: str, body: str) -> dict:
        import urllib.error  # here: a run recorded into a data directory never loads HTTP
        import urllib.request

        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, data=body.encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            detail = err.read()[:500].decode(errors="replace")
            if err.code >= 500 or err.code in (408, 429):
                raise Unreachable(f"HTTP {err.code}") from None
            if err.code in (413, 422) and path != "/api/watched":  # these events, not the run
                raise Invalid(f"HTTP {err.code}: {detail}") from None
            hint = {
                401: " (set BNSCOPE_TOKEN to the server's token)",
                404: " (not a bnscope server that takes watched runs?)"
                if path == "/api/watched"
                else " (the run was deleted?)",
            }.get(err.code, "")
            raise Refused(f"HTTP {err.code} on {path}{hint}: {detail}") from None
        except (urllib.error.URLError, OSError) as err:  # refused, reset, timed out, no such host
            raise Unreachable(str(getattr(err, "reason", err))) from None


class StoreSink:
    """A bnscope data directory (<data_dir>/bnscope.sqlite3): the run is recorded exactly as a server
    records one (Store, StoreWriter and bnscope.runs.run.publish), for a later `bnscope serve --data-dir`."""

    def __init__(self, data_dir: Path | str, name: str, description: dict):
        self.path = Path(data_dir).expanduser() / "bnscope.sqlite3"
        self.name, self.description = name, description
        self.failure: str | None = None

    def __str__(self) -> str:
        return str(self.path)

    def open(self) -> None:
        from bnscope.runs.run import publish, run_from_row
        from bnscope.storage.store import Store, StoreError
        from bnscope.storage.writer import StoreWriter

        try:
            self.store = Store(self.path)
            self.writer = StoreWriter(self.store, self._failed)
            row = self.store.run(self.store.create_run(self.name, self.description, source="watched", status="created"))
        except StoreError as err:
            raise Refused(str(err)) from None
        self.run = run_from_row(self.store, row)
        self._publish = lambda event: publish(self.run, event, self.writer)
        self._publish({"type": "status", "step": 0, "status": "running", "message": ""})

    def _failed(self, run_ids: set[int], reason: str) -> None:  # on the writer's thread
        self.failure = reason

    def send(self, batch: list[dict]) -> None:
        if self.failure is not None:
            raise Refused(self.failure)
        while batch:
            self._publish(batch[0])
            del batch[0]

    def discard(self, batch: list[dict]) -> int:
        return 0  # publish takes any event

    def reconnecting(self) -> None:
        pass

    def flush(self, timeout: float) -> bool:
        return self.writer.flush(timeout) if hasattr(self, "writer") else True

    def close(self) -> None:
        if not hasattr(self, "writer"):
            return  # never opened
        self.writer.flush()
        self.writer.close()
        if self.failure is not None:
            log.warning("bnscope.watch: %s: %s", self.path, self.failure)
