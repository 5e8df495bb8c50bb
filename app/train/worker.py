"""Inside a worker: what a run's worker is given (RunSpec, StackSpec), the trainer's command queue, and
`train`, the body every backend runs (bnscope.runs.workers: a thread, a spawned process, a Ray actor).

    train(spec, commands, emit)            # builds the data and the trainer, restores checkpoints, trains
    process_main(spec, commands_in, events_out)   # a spawned worker process: pipes in and out

A worker process ignores nothing it is told: SIGINT and SIGTERM ask it to checkpoint and stop (a
Ctrl-C reaches the whole process group), and a server that goes away is a shutdown too. torch loads
inside `train`, so a server that imports this module (for the specs) does not load it.
"""

import os
import queue
import signal
import threading
from dataclasses import dataclass
from typing import Callable

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
        StackTrainer(
            spec.configs, splits, emit, checkpoint_every=spec.checkpoint_every, checkpoints=spec.checkpoints
        ).run(commands)
        return
    from bnscope.train.trainer import Trainer

    trainer = Trainer(
        spec.config, make_splits(spec.words, spec.config.block_size), emit, checkpoint_every=spec.checkpoint_every
    )
    if spec.checkpoint is not None:
        trainer.load_checkpoint(spec.checkpoint)
    trainer.run(commands)


# ---- a worker process of its own (bnscope.runs.workers.ProcessBackend spawns it) ----------------------------
def process_main(spec: Spec, commands_in, events_out) -> None:
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
