"""bnscope's trainer in this process, every event it makes taken down the server's real path, trained
in measuring windows.

  RealPath(config)            what `bnscope serve` does with each event a worker sends (bnscope.runs.run.publish:
                              series points, the run's state, JSON once, the run's Channel) and a real
                              StoreWriter on a real SQLite store in a temporary directory
  ServerProcess(config)       the same RealPath in a process of its own, fed as a worker feeds the server:
                              the trainer's emit puts each event in an outbox, a sender thread pickles it
                              down a pipe (bnscope.train.worker.process_main's structure)
  TrainerWindows(config, ...) bnscope.train.trainer.Trainer on a thread, paused between windows through its real
                              command queue: run_steps(n) or run_for(seconds) -> (steps, seconds)

By default the server's share of each event runs on the training thread (as when the server trained in
a thread of its own); with `path=ServerProcess(config)` it runs where `bnscope serve` runs it, in
another process, off the worker's core. A window is timed from the trainer's resume to its pause (after
the pause's flush of pending losses), plus the time the server then takes to write what is left: a
window pays for everything it records. The checkpoint a pause makes is the benchmark's, not training's,
and is not written; as a pause restarts the checkpoint cadence, windows hold no checkpoints (one every
10,000 steps in a real run).
"""

import multiprocessing
import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import torch

from bnscope.config import RunConfig
from bnscope.train.data import Splits
from bnscope.events import RunState
from bnscope.stream.hub import Channel
from bnscope.runs.run import Run, publish
from bnscope.storage.store import Store
from bnscope.train.trainer import Trainer
from bnscope.train.worker import CommandQueue
from bnscope.storage.writer import StoreWriter

from bench.server import LONG

Tap = Callable[[dict, float], None]  # sees each event and perf_counter() as the trainer emits it


class RealPath:
    """The emit of a trainer whose events go where a served run's go."""

    def __init__(self, config: RunConfig):
        self.dir = Path(tempfile.mkdtemp(prefix="bnscope-bench-"))
        self.store = Store(self.dir / "bnscope.sqlite3")
        self.failures: list[str] = []
        self.writer = StoreWriter(self.store, lambda run_ids, reason: self.failures.append(reason))
        run_id = self.store.create_run("bench", config.model_dump(), status="created", lr=config.lr)
        self.run = Run(
            id=run_id,
            name="bench",
            source="trainer",
            config=config.model_dump(),
            paired_with=None,
            sweep_id=None,
            created_at=time.time(),
            state=RunState(),
            channel=Channel(reserve=lambda ceiling: self.store.reserve_ids(run_id, ceiling)),
        )

    def __call__(self, event: dict) -> None:
        if event["type"] == "checkpoint":
            self.writer.checkpoint(self.run.id, event["step"], event["state"])
        elif event["type"] != "weights":
            publish(self.run, event, self.writer)

    def flush(self) -> None:
        self.writer.flush(timeout=60)

    def close(self) -> None:
        self.writer.close()
        if self.failures:
            raise RuntimeError(f"the store writer failed: {self.failures[0]}")
        shutil.rmtree(self.dir, ignore_errors=True)


FLUSH = {"type": "bench-flush"}  # down the pipe after a window's events: answered once they are stored


def _serve(config: RunConfig, conn) -> None:
    """The server's side of ServerProcess: every event down RealPath, until None."""
    path = RealPath(config)
    try:
        while (event := conn.recv()) is not None:
            if event == FLUSH:
                path.flush()
                conn.send("flushed")
            else:
                path(event)
    finally:
        path.close()
        conn.send("closed")


class ServerProcess:
    """RealPath in a spawned process, fed as a worker process feeds `bnscope serve`: emit puts the event
    in an outbox and returns at once; a sender thread pickles it down a pipe."""

    def __init__(self, config: RunConfig):
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(config, child), name="bench-server", daemon=True)
        self.process.start()
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.sender = threading.Thread(target=self._send, name="bench-events", daemon=True)
        self.sender.start()

    def _send(self) -> None:
        while (event := self.outbox.get()) is not None:
            self.conn.send(event)
        self.conn.send(None)

    def __call__(self, event: dict) -> None:
        if event["type"] != "weights":
            self.outbox.put(event)

    def flush(self) -> None:
        self.outbox.put(FLUSH)
        if self.conn.recv() != "flushed":
            raise RuntimeError("the bench's server process did not flush")

    def close(self) -> None:
        self.outbox.put(None)
        self.conn.recv()  # "closed": its store is written and removed
        self.process.join(timeout=60)


class _Commands(CommandQueue):
    """The trainer's real queue, which also pauses it after `budget` steps (it polls once a step) and
    notes when it hands over a resume: a window's start."""

    def __init__(self):
        super().__init__()
        self.budget: int | None = None
        self.polls = 0
        self.resumed_at = 0.0

    def poll(self) -> list[dict]:
        commands = super().poll()
        if self.budget is not None:
            self.polls += 1  # the first step after a resume runs before the first poll
            if self.polls >= self.budget:
                self.budget = None
                commands.append({"op": "pause"})
        return commands

    def wait(self) -> dict:
        command = super().wait()
        if command["op"] == "resume":
            self.resumed_at = time.perf_counter()
        return command


class TrainerWindows:
    def __init__(
        self, config: RunConfig, splits: Splits, tap: Tap | None = None, path: RealPath | ServerProcess | None = None
    ):
        config = config.model_copy(update={"steps": LONG})
        self.path = path or RealPath(config)
        self.tap = tap
        self.trainer = Trainer(config, splits, self._emit, device=torch.device("cpu"))
        self.commands = _Commands()
        self._seen: list[tuple[str, int, float]] = []  # (control action or status, step, perf_counter)
        self._changed = threading.Condition()
        self._pausing = False
        self.commands.put({"op": "pause"})  # paused before its first step
        self.thread = threading.Thread(
            target=self.trainer.run, args=(self.commands,), name="bench-trainer", daemon=True
        )
        self.thread.start()
        self._wait("paused")

    def _emit(self, event: dict) -> None:
        now = time.perf_counter()
        if self.tap is not None:
            self.tap(event, now)
        kind = event["type"]
        if kind == "control" or kind == "status":
            mark = event["action"] if kind == "control" else event["status"]
            self._pausing = mark == "pause" or (self._pausing and mark != "paused")
            with self._changed:
                self._seen.append((mark, event["step"], now))
                self._changed.notify_all()
        if not (kind == "checkpoint" and self._pausing):
            self.path(event)

    def _wait(self, mark: str) -> tuple[int, float]:
        with self._changed:
            self._changed.wait_for(lambda: self._seen and self._seen[-1][0] == mark)
            _, step, at = self._seen[-1]
            return step, at

    def _window(self, start: Callable[[], None], end: Callable[[], None]) -> tuple[int, float]:
        with self._changed:
            self._seen.clear()
        start()
        end()
        self._wait("paused")
        step1, t1 = next((s, t) for mark, s, t in self._seen if mark == "pause")
        step0 = next(s for mark, s, _ in self._seen if mark == "resume")
        flush0 = time.perf_counter()
        self.path.flush()
        return step1 - step0, t1 - self.commands.resumed_at + time.perf_counter() - flush0

    def run_steps(self, steps: int) -> tuple[int, float]:
        """Exactly `steps` steps: (steps, seconds)."""

        def start() -> None:
            self.commands.polls, self.commands.budget = 0, steps
            self.commands.put({"op": "resume"})

        return self._window(start, lambda: None)

    def run_for(self, seconds: float) -> tuple[int, float]:
        """About `seconds` of training: (steps, seconds)."""
        return self._window(
            lambda: self.commands.put({"op": "resume"}),
            lambda: (time.sleep(seconds), self.commands.put({"op": "pause"})),
        )

    def close(self) -> None:
        self.commands.put({"op": "stop"})
        self.thread.join(timeout=60)
        self.path.close()
