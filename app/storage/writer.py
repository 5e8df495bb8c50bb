"""StoreWriter: the one thread that writes to SQLite. The runs service hands it events and
checkpoints as they arrive from the workers; it writes them in one transaction about once a second,
in the order they came, so a checkpoint is never ahead of the history it covers. If a write fails (disk
full, read-only file) the runs in that batch are reported to `on_failure` and the writer carries on
with later batches."""

import queue
import sqlite3
import threading
import time
from typing import Callable

from bnscope.events import Point
from bnscope.storage.store import Store

FLUSH_SECONDS = 1.0


class StoreWriter:
    def __init__(self, store: Store, on_failure: Callable[[set[int], str], None]):
        self.store = store
        self.on_failure = on_failure
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="store-writer", daemon=True)
        self._thread.start()

    # ---- from any thread (cheap: a queue put) ------------------------------------------------
    def event(
        self, run_id: int, event_id: int, event: dict, text: str, points: list[Point], state: dict | None
    ) -> None:
        """An event with its id, its JSON, its series points and the run's state after it (None: unchanged)."""
        self._queue.put(("event", (run_id, event_id, event, text, points, state)))

    def checkpoint(self, run_id: int, step: int, state: bytes) -> None:
        self._queue.put(("checkpoint", (run_id, step, state)))

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything handed over so far is written."""
        done = threading.Event()
        self._queue.put(("flush", done))
        return done.wait(timeout)

    def close(self) -> None:
        self._queue.put(("close",))
        self._thread.join(timeout=10)

    # ---- the writer thread -------------------------------------------------------------------
    def _loop(self) -> None:
        closing = False
        while not closing:
            items = [self._queue.get()]  # wait for work, then gather up to a second's worth
            deadline = time.monotonic() + FLUSH_SECONDS
            while items[-1][0] == "event" or items[-1][0] == "checkpoint":
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    items.append(self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
            closing = self._write(items)  # a flush or close request is written at once

    def _write(self, items: list[tuple]) -> bool:
        events, checkpoints, waiters, closing, run_ids = [], [], [], False, set()
        try:
            for item in items:
                kind = item[0]
                if kind == "event":
                    events.append(item[1])
                    run_ids.add(item[1][0])
                elif kind == "checkpoint":
                    checkpoints.append(item[1])
                    run_ids.add(item[1][0])
                elif kind == "flush":
                    waiters.append(item[1])
                elif kind == "close":
                    closing = True
            if events or checkpoints:
                self.store.write(events, checkpoints)
        except (sqlite3.Error, OSError) as err:
            self.on_failure(run_ids, f"could not save to the database: {err}")
        except Exception as err:  # a bug must fail the runs it concerns, not the writer of all runs
            self.on_failure(run_ids, f"could not save this run's events: {type(err).__name__}: {err}")
        finally:
            for waiter in waiters:
                waiter.set()
        return closing
