"""Runs as Ray actors, for more runs than one machine trains: the same run interface as a worker
process (bnscope.runs.workers), each run an actor of one CPU that calls the same `train`.

    bnscope serve --ray local            # a private Ray on this machine, on loopback
    bnscope serve --ray HOST:6379        # a Ray cluster (every node needs bnscope installed)

Events stream back by long polling: the server's thread for a run asks the actor for its next
events (waiting up to POLL_SECONDS), so an event reaches the server as soon as it is made. A dead
actor (its node lost, its process killed) ends the poll with an error: the run is interrupted,
resumable from its last checkpoint, as with a worker process.
"""

import os
import queue
import socket
import threading

import ray
from ray.exceptions import RayError

from bnscope.train.worker import CommandQueue, OnEvent, OnExit, Spec, lower_priority, train

POLL_SECONDS = 0.5  # how long one poll waits for an event (an idle run's poll comes back empty)
MAX_BATCH = 256  # events a poll returns at most


@ray.remote(num_cpus=1, max_concurrency=3)  # training, polls and commands each on a thread of the actor
class RunActor:
    def __init__(self, spec: Spec):
        lower_priority()  # the actor's process is its own: as a worker process, it yields to the server
        self.commands = CommandQueue()
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.ended = False
        threading.Thread(target=self._train, args=(spec,), name="train", daemon=True).start()

    def _train(self, spec: Spec) -> None:
        try:
            train(spec, self.commands, self.outbox.put)
        finally:
            self.outbox.put(None)  # the end, after the last event

    def info(self) -> dict:
        return {
            "backend": "ray",
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
        }

    def send(self, command: dict) -> None:
        self.commands.put(command)

    def poll(self, wait_s: float) -> list[dict] | None:
        """The events made since the last poll, waiting up to wait_s for the first; None once the run
        has ended and every event was handed over."""
        if self.ended:
            return None
        try:
            event = self.outbox.get(timeout=wait_s)
        except queue.Empty:
            return []
        events = []
        while event is not None:
            events.append(event)
            if len(events) >= MAX_BATCH or self.outbox.empty():
                return events
            event = self.outbox.get()
        self.ended = True
        return events or None


class RayWorker:
    def __init__(self, run_id: int, spec: Spec, on_event: OnEvent, on_exit: OnExit):
        self.actor = RunActor.options(name=f"bnscope-run-{run_id}-{os.urandom(3).hex()}").remote(spec)
        self.info = {"backend": "ray", "host": "", "pid": 0, "node": None}  # filled in once the actor is up

        def follow() -> None:
            reason = ""
            try:
                self.info.update(ray.get(self.actor.info.remote()))
                while (events := ray.get(self.actor.poll.remote(POLL_SECONDS))) is not None:
                    for event in events:
                        on_event(event)
            except RayError as err:
                reason = f"the Ray actor of this run died ({type(err).__name__})"
            finally:
                ray.kill(self.actor, no_restart=True)
            on_exit(reason)

        threading.Thread(target=follow, name=f"run-{run_id}-ray", daemon=True).start()

    def send(self, command: dict) -> None:
        self.actor.send.remote(command)  # in order: Ray keeps a caller's calls to one actor in order

    def kill(self) -> None:
        ray.kill(self.actor, no_restart=True)


class RayBackend:
    name = "ray"

    def __init__(self, address: str):
        common = dict(include_dashboard=False, logging_level="warning", log_to_driver=False)
        if address == "local":  # a private cluster of this machine, reachable on loopback only
            ray.init(num_cpus=os.cpu_count(), _node_ip_address="127.0.0.1", **common)
        else:
            ray.init(address=address, **common)
        self.slots = int(ray.cluster_resources().get("CPU", 1))

    def start(self, run_id: int, spec: Spec, on_event: OnEvent, on_exit: OnExit) -> RayWorker:
        return RayWorker(run_id, spec, on_event, on_exit)

    def close(self) -> None:
        ray.shutdown()
