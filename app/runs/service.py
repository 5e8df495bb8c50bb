"""The runs service: create (alone, paired, or as a sweep), queue, control, sample, read back.
Routes call this. It never runs a training step: each run trains in a worker (bnscope.runs.workers)
behind the run interface, and the service turns the worker's events into the stream (hub), the
store (writer) and the run's state (bnscope.events.RunState, folded here once: bnscope.runs.run.publish).

At most `settings.max_runs` workers exist at once (a slot each); more runs wait as `queued` and
start in order as slots free (bnscope.runs.scheduling). Stopping the server is not losing: every worker
is told to shut down, checkpoints at its step and ends `interrupted`, and resumes exactly after a restart.
"""

import threading
import time
from contextlib import contextmanager

from pydantic import ValidationError

from bnscope.config import RunConfig, Settings, describe_errors
from bnscope.events import ACTIONS, ACTIVE, ENDED, status_event
from bnscope.runs import stacking
from bnscope.runs.errors import Conflict, Invalid, NotFound, StorageFull
from bnscope.runs.reads import Reads
from bnscope.runs.run import SETTLE_SECONDS, Run, publish, run_from_row
from bnscope.runs.samples import Samples
from bnscope.runs.scheduling import Scheduling
from bnscope.runs.workers import Backend
from bnscope.storage import sweep_summary
from bnscope.storage.store import Store, StoreFull
from bnscope.storage.writer import StoreWriter
from bnscope.train.data import Splits

SHUTDOWN_SECONDS = 8.0  # workers get this long to checkpoint when the server stops


class RunService(Scheduling, Samples, Reads):
    """The one service the routes call. Its parts, each a module of bnscope.runs: the queue and the slots
    (scheduling), samples from a run's weights (samples), a run's records read back (reads)."""

    def __init__(self, store: Store, words: list[str], settings: Settings, backend: Backend):
        self.store = store
        self.words = words
        self.settings = settings
        self.backend = backend
        self.writer = StoreWriter(store, self._on_store_failure)
        self._splits: dict[int, Splits] = {}  # by block_size, for samples' novelty
        self._lock = threading.RLock()  # guards the runs, the queue and the slots
        self._stopping = False
        self._pacers: dict[int, stacking.Pacer] = {}  # by sweep: its stacks kept in lockstep
        self.runs: dict[int, Run] = {row["id"]: run_from_row(self.store, row) for row in store.runs()}
        for run_id, source in store.training_runs():  # the server died under them: an event, as any change
            message = (
                "the server stopped while this watched run reported; its process goes on when it reconnects"
                if source == "watched"
                else "the server stopped while this run trained; resume to continue"
            )
            run = self.runs[run_id]
            self._publish(run, status_event(run.state.step, "interrupted", message))
        # what waits for a slot, oldest first: a run alone, or the members of a stack ([id, ...] each)
        self.queue: list[list[int]] = []
        queued = [run for run in self.runs.values() if run.state.status == "queued"]
        self.queue += [[run.id] for run in queued if run.sweep_id is None]
        for sweep_id in dict.fromkeys(run.sweep_id for run in queued if run.sweep_id is not None):
            self.queue += self._stacks([run for run in queued if run.sweep_id == sweep_id])
        self._fill_slots()

    # ---- reading --------------------------------------------------------------------------------
    def get(self, run_id: int) -> Run:
        try:
            return self.runs[run_id]
        except KeyError:
            raise NotFound(f"no run with id {run_id}") from None

    def all(self) -> list[Run]:
        return list(self.runs.values())

    def describe(self, run: Run) -> dict:
        state = run.state
        config = run.config if run.source == "trainer" else None
        steps = config["steps"] if config else None
        partner = self.runs.get(run.paired_with) if run.paired_with else None
        return {
            "id": run.id,
            "name": run.name,
            "source": run.source,
            "status": state.status,
            "message": state.message,
            "step": state.step,
            "steps": steps,
            "steps_per_s": state.steps_per_s,
            "eta_s": (steps - state.step) / state.steps_per_s if steps and state.steps_per_s > 0 else None,
            "lr": state.lr,
            "config": config,
            "watched": None if config else run.config,
            "paired_with": run.paired_with,
            "sweep_id": run.sweep_id,
            "differs": _differs(run.config, partner.config) if partner and config else {},
            "layers": _layer_names(run.model),
            "queue_position": self._queue_position(run.id),
            "worker": run.worker_info,
            "created_at": run.created_at,
            "last_event_id": run.channel.last_id,
        }

    # ---- creating -------------------------------------------------------------------------------
    def create(self, overrides: dict, paired_with: int | None = None, name: str | None = None) -> Run:
        """A new run with the default config plus `overrides`, or, paired with another run, that
        run's config (same seed, same batch order) plus `overrides`, trained from step 0."""
        base = self._trainer_config(paired_with) if paired_with is not None else {}
        try:
            config = RunConfig(**{**base, **overrides})
        except ValidationError as err:
            if paired_with is None:
                raise  # the request itself breaks a rule: 422
            raise Conflict(f"with run {paired_with}'s settings: {describe_errors(err)}") from None
        if name is None:
            name = ", ".join(f"{key}={value}" for key, value in overrides.items()) or (
                "copy" if paired_with else "default"
            )
        with self._lock:
            self._check_queue_room(1)
            return self._add(name, config, paired_with, sweep_id=None)

    def create_sweep(self, overrides: dict, vary: dict[str, list]) -> tuple[int, list[Run]]:
        """Paired runs over a grid of up to three settings (bnscope.runs.stacking.grid): the same config, seed and
        batch order but the varied settings (a varied value replaces one in `overrides`), trained as stacks
        that start together. Every member is checked before any run is made."""
        for setting in vary:
            if setting not in RunConfig.model_fields:
                raise Invalid("vary", f"{setting!r} is not a setting")
        members = stacking.grid(overrides, vary)  # a bad value: ValidationError
        if (problem := stacking.too_big(members)) is not None:
            raise Invalid("vary", problem)
        with self._lock:
            self._check_queue_room(1)
            shared = {k: v for k, v in overrides.items() if k not in vary}
            dumped = {
                s: [RunConfig(**{**overrides, s: v}).model_dump()[s] for v in values] for s, values in vary.items()
            }
            with _full_refused():
                sweep_id = self.store.create_sweep(shared, dumped)
            runs: list[Run] = []
            for name, config in members:
                runs.append(self._add(name, config, runs[0].id if runs else None, sweep_id, queue=False))
            self.queue += self._stacks(runs)
            self._fill_slots()
        return sweep_id, runs

    def resume_sweep(self, sweep_id: int) -> list[Run]:
        """Queue every interrupted member of a sweep, as stacks that start together, each from its last
        checkpoint."""
        members = [run for run in self.runs.values() if run.sweep_id == sweep_id]
        if not members:
            raise NotFound(f"no sweep with id {sweep_id}")
        waiting = [run for run in members if run.state.status == "interrupted"]
        if not waiting:
            raise Conflict(f"sweep {sweep_id} has no interrupted member to resume")
        with self._lock:
            self._check_queue_room(1)
            for run in waiting:
                self._publish(run, status_event(run.state.step, "queued", "waiting for a free slot"))
            self.queue += self._stacks(waiting)
            self._fill_slots()
        return waiting

    def create_watched(self, name: str, description: dict) -> Run:
        """A run a user's own process trains and reports (bnscope.watch): no worker, no slot; its events
        arrive through `ingest`."""
        with self._lock:
            with _full_refused():
                run_id = self.store.create_run(name, description, source="watched", status="created")
            run = run_from_row(self.store, self.store.run(run_id))
            self.runs[run_id] = run
        self._publish(run, status_event(0, "running"))
        return run

    def ingest(self, run_id: int, events: list[dict]) -> Run:
        """Events from a watched run's process, in order: streamed and stored like a worker's."""
        run = self.get(run_id)
        if run.source != "watched":
            raise Conflict(f"run {run_id} is trained by bnscope: only a watched run takes events")
        if run.state.status in ENDED:
            raise Conflict(f"run {run_id} is {run.state.status}: it takes no more events")
        for event in events:
            self._publish(run, event)
        return run

    def sweeps(self) -> list[dict]:
        return [{**s, "runs": [r.id for r in self.runs.values() if r.sweep_id == s["id"]]} for s in self.store.sweeps()]

    def sweep_summary(self, sweep_id: int, step: int | None) -> dict:
        """Every member's measures at `step`, and each group's (members that differ only by seed)."""
        sweep = next((s for s in self.sweeps() if s["id"] == sweep_id), None)
        if sweep is None or not sweep["runs"]:
            raise NotFound(f"no sweep with id {sweep_id}")
        self.written(*(self.runs[i] for i in sweep["runs"]))  # an ended sweep is read whole; one training, as stored
        return sweep_summary.summary(self.store, sweep, [self.describe(self.runs[i]) for i in sweep["runs"]], step)

    def _trainer_config(self, run_id: int) -> dict:
        run = self.get(run_id)
        if run.source != "trainer":
            raise Conflict(f"run {run_id} is a watched run: bnscope cannot train a copy of it")
        return run.config

    def _add(
        self, name: str, config: RunConfig, paired_with: int | None, sweep_id: int | None, queue: bool = True
    ) -> Run:
        dumped = config.model_dump()
        with _full_refused():
            run_id = self.store.create_run(
                name, dumped, paired_with=paired_with, sweep_id=sweep_id, status="queued", lr=config.lr
            )
        row = self.store.run(run_id)
        run = run_from_row(self.store, row)
        self.runs[run_id] = run
        self._publish(run, status_event(0, "queued", "waiting for a free slot"))
        if queue:
            self.queue.append([run_id])
            self._fill_slots()
        return run

    # ---- events ------------------------------------------------------------------------------------
    def _on_event(self, run: Run, event: dict) -> None:
        """On the worker's thread (or ours, for the service's own): keep what is internal, stream and
        store the rest. Never blocks on a client or the database."""
        kind = event["type"]
        if kind == "checkpoint":
            run.last_checkpoint = (event["step"], event["state"])  # samples need not wait for the store
            self.writer.checkpoint(run.id, event["step"], event["state"])
        elif kind == "weights":
            run.weights = (time.monotonic(), event["step"], event["state"])
            with run.settled:
                run.settled.notify_all()
        else:
            self._publish(run, event)

    def _publish(self, run: Run, event: dict) -> None:
        publish(run, event, self.writer)

    def _on_exit(self, run: Run, reason: str) -> None:
        """A worker ended. Without a final status (killed, crashed) the run is interrupted, resumable
        from its last checkpoint; either way its slot goes to the next queued run."""
        with self._lock:
            run.worker = None
            with run.settled:
                run.settled.notify_all()
            if run.state.status in ACTIVE:
                saved = run.last_checkpoint or self.store.checkpoint(run.id)
                where = f"from step {saved[0]:,} (its last checkpoint)" if saved else "from step 0"
                message = f"{reason or 'the worker ended early'}; resume to continue {where}"
                self._publish(run, status_event(saved[0] if saved else 0, "interrupted", message))
            self._fill_slots()

    def _on_store_failure(self, run_ids: set[int], reason: str) -> None:
        for run_id in run_ids:
            run = self.runs.get(run_id)
            if run is not None and run.worker is not None:
                run.worker.send({"op": "fail", "message": reason})  # it ends `failed`, with the reason
            elif run is not None and run.state.status != "failed":  # no worker to say it: the service does
                self._publish(run, status_event(run.state.step, "failed", reason))

    # ---- control -----------------------------------------------------------------------------------
    def pause(self, run_id: int) -> Run:
        run = self._training(run_id, "pause", ACTIONS["pause"])
        run.worker.send({"op": "pause"})
        return self._settled(run, ("paused",))

    def resume(self, run_id: int) -> Run:
        run = self.get(run_id)
        if run.state.status == "paused" and run.worker is not None:
            run.worker.send({"op": "resume"})
            return self._settled(run, ("running",))
        if run.state.status != "interrupted" or run.source != "trainer":
            raise Conflict(f"run {run_id} is {run.state.status}; only a paused or interrupted run can be resumed")
        with self._lock:
            self._check_queue_room(1)
            self.queue.append([run.id])  # a sweep member alone is a stack of one: the same engine
            self._publish(run, status_event(run.state.step, "queued", "waiting for a free slot"))
            self._fill_slots()
        return run

    def stop(self, run_id: int) -> Run:
        run = self.get(run_id)
        with self._lock:
            if run.state.status in ("interrupted", "queued") and run.worker is None:
                self._dequeue(run.id)
                self._publish(run, status_event(run.state.step, "stopped", f"stopped while {run.state.status}"))
                return run
        run = self._training(run_id, "stop", ACTIVE)
        run.worker.send({"op": "stop"})
        return self._settled(run, ENDED)

    def set_lr(self, run_id: int, lr: float) -> Run:
        run = self._training(run_id, "change the learning rate of", ACTIVE)
        with run.settled:
            run.worker.send({"op": "lr", "lr": lr})
            run.settled.wait_for(lambda: run.state.lr == lr or run.worker is None, timeout=SETTLE_SECONDS)
        return run

    def rename(self, run_id: int, name: str) -> Run:
        run = self.get(run_id)
        self.store.update_run(run_id, name=name)
        run.name = name
        return run

    def _training(self, run_id: int, action: str, statuses: tuple[str, ...]) -> Run:
        run = self.get(run_id)
        if run.state.status not in statuses or run.worker is None:
            raise Conflict(f"cannot {action} run {run_id}: it is {run.state.status}")
        return run

    @staticmethod
    def _settled(run: Run, statuses: tuple[str, ...]) -> Run:
        """Wait until the worker has acted (a step, or a dev evaluation), so the answer shows the new status."""
        with run.settled:
            run.settled.wait_for(lambda: run.state.status in statuses or run.worker is None, timeout=SETTLE_SECONDS)
        return run

    def delete(self, run_id: int) -> None:
        """Stop the run if it trains, then delete it with all it recorded. On a full disk the run stays."""
        run = self.get(run_id)
        with self._lock:
            self._dequeue(run.id)
        if run.worker is not None:
            run.worker.send({"op": "stop"})
            with run.settled:
                if not run.settled.wait_for(lambda: run.worker is None, timeout=SETTLE_SECONDS):
                    run.worker.kill()
        self.writer.flush()  # its last events are written before the rows go
        with _full_refused("the run is kept: free some space and delete it again"):
            self.store.delete_run(run_id)
        with self._lock:
            self.runs.pop(run_id, None)

    def closing(self) -> None:
        """The server begins to stop (from a signal handler): start no queued run from now on."""
        self._stopping = True

    def shutdown(self) -> None:
        """Every worker checkpoints at its step and ends interrupted; then the store is closed."""
        with self._lock:
            self._stopping = True
            training = [run for run in self.runs.values() if run.worker is not None]
        for run in training:
            run.worker.send({"op": "shutdown", "message": "the server stopped; resume to continue"})
        deadline = time.monotonic() + SHUTDOWN_SECONDS
        for run in training:
            with run.settled:
                run.settled.wait_for(lambda: run.worker is None, timeout=max(0.0, deadline - time.monotonic()))
            if run.worker is not None:
                run.worker.kill()
        self.writer.flush()
        self.writer.close()
        self.backend.close()


def _differs(config: dict, partner: dict) -> dict:
    return {key: value for key, value in config.items() if partner.get(key) != value}


def _layer_names(model: dict | None) -> dict:
    model = model or {"activations": [], "weights": [], "norms": []}
    return {group: [entry["name"] for entry in model[group]] for group in ("activations", "weights", "norms")}


@contextmanager
def _full_refused(then: str = "free some space and try again"):
    """A store write that did not fit: the run service's StorageFull (a 507), saying what to do."""
    try:
        yield
    except StoreFull as err:
        raise StorageFull(f"{err}; {then}") from err
