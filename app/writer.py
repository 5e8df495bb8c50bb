"""StoreWriter: the one thread that writes to SQLite. Training threads hand it events and ask
for checkpoints; it writes them in one transaction about once a second, so the training hot
path never waits on the database. If a write fails (disk full, read-only file) the runs in
that batch are reported to `on_failure` and the writer carries on with later batches."""

import io
import queue
import sqlite3
import threading
import time
from typing import Callable

import torch

from bnscope.config import RunConfig
from bnscope.history import series_points
from bnscope.hub import Message
from bnscope.store import Store

FLUSH_SECONDS = 1.0


class StoreWriter:
    def __init__(self, store: Store, on_failure: Callable[[set[int], str], None]):
        self.store = store
        self.on_failure = on_failure
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="store-writer", daemon=True)
        self._thread.start()

    # ---- from any thread (cheap: a queue put) ------------------------------------------------
    def event(self, run_id: int, message: Message, event: dict, config: RunConfig) -> None:
        self._queue.put(("event", run_id, message, event, config))

    def checkpoint(self, run_id: int, state: dict) -> None:
        """A checkpoint (Trainer.state_dict()), serialised and written on the writer's thread. Handed
        over after the events it covers, so it is never ahead of the history that is saved."""
        self._queue.put(("checkpoint", run_id, state))

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
                    _, run_id, message, event, config = item
                    run_ids.add(run_id)
                    events.append((run_id, message.id, event, message.data, series_points(event, config)))
                elif kind == "checkpoint":
                    _, run_id, state = item
                    run_ids.add(run_id)
                    buffer = io.BytesIO()
                    torch.save(state, buffer)
                    checkpoints.append((run_id, state["step"], buffer.getvalue()))
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
