"""A run's worker: one trainer behind one narrow interface, commands in and events out.

    worker = backend.start(run_id, spec, on_event, on_exit)
    worker.send({"op": "pause"})          # pause, resume, stop, lr, checkpoint, weights, shutdown, fail
    worker.info                            # {"backend", "host", "pid"}: where the run trains
    on_event(event)                        # every event, in order, on a thread of the backend's
    on_exit(reason)                        # once, after the last event: "" for a clean end, else why it died

Backends, all running `train(spec, commands, emit)`:
  ThreadBackend   a thread of this process: the CLI and the tests
  ProcessBackend  a spawned process with one torch thread, niceness +10: what `bnscope serve` uses
  RayBackend      a Ray actor (bnscope.runs.ray): runs beyond one machine

A worker process ignores nothing it is told: SIGINT and SIGTERM ask it to checkpoint and stop (a
Ctrl-C reaches the whole process group), and a server that goes away is a shutdown too.
"""

import multiprocessing
import os
import queue
import signal
import socket
import threading
from dataclasses import dataclass
from typing import Callable, Protocol

from bnscope.config import RunConfig

WORKER_NICENESS = 10  # added to a worker process's niceness (0 is the usual; 19 the lowest priority)
OnEvent = Callable[[dict], None]
OnExit = Callable[[str], None]


@dataclass(frozen=True)
class RunSpec:
    """All a worker needs to train a run, picklable: the config, the names, where to start from."""

    config: RunConfig
    words: list[str]
    checkpoint: bytes | None = None  # resume from here (a `checkpoint` event's state)
    checkpoint_every: int = 10_000
    threads: int = 1  # torch threads: one is fastest for this small network, and leaves cores to other runs


@dataclass(frozen=True)
class StackSpec:
    """A stack of sweep members to train as one (bnscope.train.stack): their configs (the same tensor
    shapes), the names, and where each starts from."""

    configs: list[RunConfig]
    words: list[str]
    checkpoints: list[bytes | None]  # each member's, None: from step 0
    checkpoint_every: int = 10_000
    threads: int = 1


Spec = RunSpec | StackSpec


class CommandQueue:
    """The trainer's commands (bnscope.train.trainer.Commands), filled from another thread."""

    def __init__(self):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()

    def put(self, command: dict) -> None:
        self._queue.put(command)

    def poll(self) -> list[dict]:
        commands = []
        while not self._queue.empty():  # checked every step: no exception on the common, empty path
            commands.append(self._queue.get())
        return commands

    def wait(self) -> dict:
        return self._queue.get()


def train(spec: Spec, commands: CommandQueue, emit: OnEvent) -> None:
    """The body of every worker: build the data and the trainer (one run's, or a stack's), restore the
    checkpoints, train."""
    import torch

    from bnscope.train.data import make_splits

    torch.set_num_threads(spec.threads)
    if isinstance(spec, StackSpec):
        from bnscope.train.stack import StackTrainer

        splits = make_splits(spec.words, spec.configs[0].block_size)
        StackTrainer(spec.configs, splits, emit, checkpoint_every=spec.checkpoint_every,
                     checkpoints=spec.checkpoints).run(commands)
        return
    from bnscope.train.trainer import Trainer

    trainer = Trainer(spec.config, make_splits(spec.words, spec.config.block_size), emit,
                      checkpoint_every=spec.checkpoint_every)  # fmt: skip
    if spec.checkpoint is not None:
        trainer.load_checkpoint(spec.checkpoint)
    trainer.run(commands)


class Worker(Protocol):
    info: dict

    def send(self, command: dict) -> None: ...
    def kill(self) -> None: ...


class Backend(Protocol):
    name: str

    def start(self, run_id: int, spec: Spec, on_event: OnEvent, on_exit: OnExit) -> Worker: ...
    def close(self) -> None: ...


# ---- in this process ------------------------------------------------------------------------------
class ThreadWorker:
    def __init__(self, run_id: int, spec: Spec, on_event: OnEvent, on_exit: OnExit):
        self.commands = CommandQueue()
        self.info = {"backend": "thread", "host": socket.gethostname(), "pid": os.getpid()}

        def body() -> None:
            reason = ""
            try:
                train(spec, self.commands, on_event)
            except Exception as err:  # noqa: BLE001 - reported as the run's end, like a dead process
                reason = f"the worker failed: {type(err).__name__}: {err}"
            on_exit(reason)

        self.thread = threading.Thread(target=body, name=f"run-{run_id}", daemon=True)
        self.thread.start()

    def send(self, command: dict) -> None:
        self.commands.put(command)

    def kill(self) -> None:
        self.commands.put({"op": "stop"})  # a thread cannot be killed; it stops between steps


class ThreadBackend:
    name = "thread"

    def start(self, run_id: int, spec: Spec, on_event: OnEvent, on_exit: OnExit) -> ThreadWorker:
        return ThreadWorker(run_id, spec, on_event, on_exit)

    def close(self) -> None:
        pass


# ---- a process of its own ---------------------------------------------------------------------------
def _process_main(spec: Spec, commands_in, events_out) -> None:
    """A worker process: commands from a pipe, events to a pipe, each on a thread of its own so the
    training loop never waits on either."""
    lower_priority()
    commands = CommandQueue()
    outbox: queue.SimpleQueue = queue.SimpleQueue()

    def shutdown(signum, frame) -> None:
        commands.put({"op": "shutdown", "message": f"the worker got {signal.Signals(signum).name}; resume to continue"})

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)

    def read_commands() -> None:
        while True:
            try:
                commands.put(commands_in.recv())
            except (EOFError, OSError):  # the server went away
                commands.put({"op": "shutdown", "message": "the server went away; resume to continue"})
                return

    def send_events() -> None:
        while (event := outbox.get()) is not None:
            try:
                events_out.send(event)
            except (BrokenPipeError, OSError):
                return  # nobody listens any more: the events of this run's end are lost with the server

    threading.Thread(target=read_commands, name="commands", daemon=True).start()
    sender = threading.Thread(target=send_events, name="events")
    sender.start()
    try:
        train(spec, commands, outbox.put)
    finally:
        outbox.put(None)
        sender.join(timeout=30)


def lower_priority() -> None:
    """Training yields the CPU to the server: with every core busy training, the page, the stream and
    GET samples still answer at once, and a run loses only the little time the server uses."""
    try:
        os.nice(WORKER_NICENESS)
    except OSError:  # not allowed here: train at the usual priority
        pass


def _exit_reason(code: int | None) -> str:
    if code == 0:
        return ""
    if code is not None and code < 0:
        return f"the worker process was killed by {signal.Signals(-code).name}"
    return f"the worker process exited with code {code}"


class ProcessWorker:
    def __init__(self, run_id: int, spec: Spec, on_event: OnEvent, on_exit: OnExit, context):
        commands_in, self._commands = context.Pipe(duplex=False)
        events_in, events_out = context.Pipe(duplex=False)
        self.process = context.Process(target=_process_main, args=(spec, commands_in, events_out),
                                       name=f"bnscope-run-{run_id}", daemon=True)  # fmt: skip
        self.process.start()
        commands_in.close()  # the child's ends: a dead child is then an EOF here
        events_out.close()
        self._lock = threading.Lock()
        self.info = {"backend": "process", "host": socket.gethostname(), "pid": self.process.pid}

        def read_events() -> None:
            try:
                while True:
                    on_event(events_in.recv())
            except (EOFError, OSError):
                pass
            self.process.join()
            on_exit(_exit_reason(self.process.exitcode))

        threading.Thread(target=read_events, name=f"run-{run_id}-events", daemon=True).start()

    def send(self, command: dict) -> None:
        with self._lock:
            try:
                self._commands.send(command)
            except (BrokenPipeError, OSError):
                pass  # the worker is gone: its exit is being reported

    def kill(self) -> None:
        self.process.kill()


class ProcessBackend:
    name = "process"

    def __init__(self):
        # spawn, not fork: a fork of a multi-threaded server (uvicorn, the store writer) can deadlock
        self._context = multiprocessing.get_context("spawn")

    def start(self, run_id: int, spec: Spec, on_event: OnEvent, on_exit: OnExit) -> ProcessWorker:
        return ProcessWorker(run_id, spec, on_event, on_exit, self._context)

    def close(self) -> None:
        pass
