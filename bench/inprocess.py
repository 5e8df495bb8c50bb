"""bnscope's trainer in this process, every event it makes taken down the server's real path, trained
in measuring windows.

  RealPath(config)            what `bnscope serve` does with each event a worker sends (bnscope.runs.run.publish:
                              series points, the run's state, JSON once, the run's Channel) and a real
                              StoreWriter on a real SQLite store in a temporary directory
  TrainerWindows(config, ...) bnscope.train.trainer.Trainer on a thread, paused between windows through its real
                              command queue: run_steps(n) or run_for(seconds) -> (steps, seconds)

Here the server's share of each event runs on the training thread (as when the server trained in a
thread of its own); `bnscope serve` does it in the server process, off the worker's core. A window is
timed from the trainer's resume to its pause (after the pause's flush of pending losses), plus the time
the store writer then takes to write what is left: a window pays for everything it records. The
checkpoint a pause makes is the benchmark's, not training's, and is not written; as a pause restarts
the checkpoint cadence, windows hold no checkpoints (one every 10,000 steps in a real run).
"""

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
        self.run = Run(id=run_id, name="bench", source="trainer", config=config.model_dump(), paired_with=None,
                       sweep_id=None, created_at=time.time(), state=RunState(),
                       channel=Channel(reserve=lambda ceiling: self.store.reserve_ids(run_id, ceiling)))  # fmt: skip

    def __call__(self, event: dict) -> None:
        if event["type"] == "checkpoint":
            self.writer.checkpoint(self.run.id, event["step"], event["state"])
        elif event["type"] != "weights":
            publish(self.run, event, self.writer)

    def close(self) -> None:
        self.writer.close()
        if self.failures:
            raise RuntimeError(f"the store writer failed: {self.failures[0]}")
        shutil.rmtree(self.dir, ignore_errors=True)


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
    def __init__(self, config: RunConfig, splits: Splits, tap: Tap | None = None):
        config = config.model_copy(update={"steps": LONG})
        self.path = RealPath(config)
        self.tap = tap
        self.trainer = Trainer(config, splits, self._emit, device=torch.device("cpu"))
        self.commands = _Commands()
        self._seen: list[tuple[str, int, float]] = []  # (control action or status, step, perf_counter)
        self._changed = threading.Condition()
        self._pausing = False
        self.commands.put({"op": "pause"})  # paused before its first step
        self.thread = threading.Thread(target=self.trainer.run, args=(self.commands,), name="bench-trainer", daemon=True)
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
        self.path.writer.flush(timeout=60)
        return step1 - step0, t1 - self.commands.resumed_at + time.perf_counter() - flush0

    def run_steps(self, steps: int) -> tuple[int, float]:
        """Exactly `steps` steps: (steps, seconds)."""

        def start() -> None:
            self.commands.polls, self.commands.budget = 0, steps
            self.commands.put({"op": "resume"})

        return self._window(start, lambda: None)

    def run_for(self, seconds: float) -> tuple[int, float]:
        """About `seconds` of training: (steps, seconds)."""
        return self._window(lambda: self.commands.put({"op": "resume"}),
                            lambda: (time.sleep(seconds), self.commands.put({"op": "pause"})))  # fmt: skip

    def close(self) -> None:
        self.commands.put({"op": "stop"})
        self.thread.join(timeout=60)
        self.path.close()
