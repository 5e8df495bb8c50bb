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

This is the server's side; what runs inside a worker (`train`, the specs, the worker process's main)
is bnscope.train.worker.
"""

import multiprocessing
import os
import signal
import socket
import threading
from typing import Protocol

from bnscope.train.worker import CommandQueue, OnEvent, OnExit, Spec, process_main, train


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
        self.process = context.Process(
            target=process_main, args=(spec, commands_in, events_out), name=f"bnscope-run-{run_id}", daemon=True
        )
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
