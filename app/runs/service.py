"""The runs service: create (alone, paired, or as a sweep), queue, control, sample, read back.
Routes call this. It never runs a training step: each run trains in a worker (bnscope.runs.workers)
behind the run interface, and the service turns the worker's events into the stream (hub), the
store (writer) and the run's state (bnscope.events.RunState, folded here once).

At most `settings.max_runs` workers exist at once (a slot each); more runs wait as `queued` and
start in order as slots free. Stopping the server is not losing: every worker is told to shut down,
checkpoints at its step and ends `interrupted`, and resumes exactly after a restart.
"""

import io
import threading
import time
from dataclasses import dataclass, field

from pydantic import ValidationError

from bnscope.runs import stacking
from bnscope.storage import sweep_summary
from bnscope.config import RunConfig, Settings, describe_errors
from bnscope.train.data import Splits, make_splits
from bnscope.events import ACTIVE, ENDED, INTERNAL, RunState, series_points, wire
from bnscope.health import Recent
from bnscope.storage.queries import HEATMAP_STEPS, HISTORY_HISTOGRAMS, HISTORY_POINTS, evenly, export_csv, export_json
from bnscope.storage.queries import histograms as histograms_of
from bnscope.storage.queries import series as series_of
from bnscope.stream.hub import Channel
from bnscope.jsonenc import to_json
from bnscope.storage.store import Store, StoreFull
from bnscope.runs.workers import Backend, Worker
from bnscope.storage.writer import StoreWriter
from bnscope.train.worker import RunSpec, StackSpec

SETTLE_SECONDS = 5.0  # how long a control request waits for the worker to act (a step, or a dev evaluation)
WEIGHTS_FRESH_SECONDS = 0.2  # live samples come from weights at most this old...
WEIGHTS_STALE_SECONDS = 5.0  # ...or, while fresher ones are on their way, at most this old
SHUTDOWN_SECONDS = 8.0  # workers get this long to checkpoint when the server stops


class NotFound(LookupError):
    pass


class Conflict(RuntimeError):
    """The action does not fit the run's state (e.g. resuming a finished run)."""


class Invalid(ValueError):
    """A request that cannot be carried out as asked, naming the field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class QueueFull(RuntimeError):
    """More runs are waiting than the queue holds; try again once some have started."""

    retry_after_s = 30


class StorageFull(RuntimeError):
    """The change could not be saved: the disk (or the database's size cap) is full."""


@dataclass(eq=False)
class Run:
    id: int
    name: str
    source: str  # "trainer" (bnscope trains it) or "watched" (bnscope.watch in a user's process)
    config: dict  # a trainer run's RunConfig, as a dict; a watched run's description
    paired_with: int | None
    sweep_id: int | None
    created_at: float
    state: RunState
    channel: Channel
    model: dict | None = None  # the layers it reports (a `model` event's body)
    worker: Worker | None = None
    worker_info: dict | None = None  # where it trains (or trained last)
    settled: threading.Condition = field(default_factory=threading.Condition)  # notified at every status change
    weights: tuple[float, int, bytes] | None = field(default=None, repr=False)  # (received at, step, bytes)
    weights_asked: float = 0.0
    last_checkpoint: tuple[int, bytes] | None = field(default=None, repr=False)  # the newest one its worker sent
    recent: Recent = field(default_factory=Recent)  # what its next stats event's health badges are judged on
    sampler: tuple[int, object] | None = field(default=None, repr=False)  # (step, eval model) built from weights

    @property
    def run_config(self) -> RunConfig:
        return RunConfig(**self.config)


class RunService:
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
        store.interrupt_training()
        self.runs: dict[int, Run] = {row["id"]: run_from_row(self.store, row) for row in store.runs()}
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
            "id": run.id, "name": run.name, "source": run.source, "status": state.status, "message": state.message,
            "step": state.step, "steps": steps, "steps_per_s": state.steps_per_s,
            "eta_s": (steps - state.step) / state.steps_per_s if steps and state.steps_per_s > 0 else None,
            "lr": state.lr, "config": config, "watched": None if config else run.config,
            "paired_with": run.paired_with, "sweep_id": run.sweep_id,
            "differs": _differs(run.config, partner.config) if partner and config else {},
            "layers": _layer_names(run.model), "queue_position": self._queue_position(run.id),
            "worker": run.worker_info, "created_at": run.created_at, "last_event_id": run.channel.last_id,
        }  # fmt: skip

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
            name = ", ".join(f"{key}={value}" for key, value in overrides.items()) or ("copy" if paired_with else "default")
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
            dumped = {s: [RunConfig(**{**overrides, s: v}).model_dump()[s] for v in values] for s, values in vary.items()}
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
                self._publish(run, {"type": "status", "step": run.state.step, "status": "queued",
                                    "message": "waiting for a free slot"})
            self.queue += self._stacks(waiting)
            self._fill_slots()
        return waiting

    def _stacks(self, runs: list[Run]) -> list[list[int]]:
        free = self.settings.max_runs - self._training_count()
        return stacking.plan([(run.id, run.run_config) for run in runs], max(1, free))

    def create_watched(self, name: str, description: dict) -> Run:
        """A run a user's own process trains and reports (bnscope.watch): no worker, no slot; its events
        arrive through `ingest`."""
        with self._lock:
            run_id = self.store.create_run(name, description, source="watched", status="created")
            run = run_from_row(self.store, self.store.run(run_id))
            self.runs[run_id] = run
        self._publish(run, {"type": "status", "step": 0, "status": "running", "message": ""})
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
        self.writer.flush()  # the newest statistics every member sent are in the store: the default step is current
        return sweep_summary.summary(self.store, sweep, [self.describe(self.runs[i]) for i in sweep["runs"]], step)

    def _trainer_config(self, run_id: int) -> dict:
        run = self.get(run_id)
        if run.source != "trainer":
            raise Conflict(f"run {run_id} is a watched run: bnscope cannot train a copy of it")
        return run.config

    def _check_queue_room(self, count: int) -> None:
        free = self.settings.max_runs - self._training_count()
        waiting = len(self.queue) + max(0, count - free)
        if waiting > self.settings.max_queued:
            raise QueueFull(f"{len(self.queue)} runs are already waiting for one of {self.settings.max_runs} slots "
                            f"(max_queued {self.settings.max_queued}); try again when some have started")  # fmt: skip

    def _add(self, name: str, config: RunConfig, paired_with: int | None, sweep_id: int | None, queue: bool = True) -> Run:
        dumped = config.model_dump()
        run_id = self.store.create_run(name, dumped, paired_with=paired_with, sweep_id=sweep_id, status="queued", lr=config.lr)
        row = self.store.run(run_id)
        run = run_from_row(self.store, row)
        self.runs[run_id] = run
        self._publish(run, {"type": "status", "step": 0, "status": "queued", "message": "waiting for a free slot"})
        if queue:
            self.queue.append([run_id])
            self._fill_slots()
        return run

    # ---- slots ------------------------------------------------------------------------------------
    def _training_count(self) -> int:
        """Slots in use: a worker each, whether it trains one run or a stack of them."""
        return len({id(getattr(run.worker, "slot", run.worker)) for run in self.runs.values() if run.worker is not None})

    def _queue_position(self, run_id: int) -> int | None:
        return next((i + 1 for i, unit in enumerate(self.queue) if run_id in unit), None)

    def _dequeue(self, run_id: int) -> None:
        for unit in self.queue:
            if run_id in unit:
                unit.remove(run_id)
        self.queue = [unit for unit in self.queue if unit]

    def _fill_slots(self) -> None:
        """Start what waits, oldest first, while slots are free: a run alone, or a stack of sweep members."""
        with self._lock:
            while self.queue and not self._stopping and self._training_count() < self.settings.max_runs:
                runs = [self.runs[run_id] for run_id in self.queue.pop(0)]
                saved = [(run.last_checkpoint or self.store.checkpoint(run.id)) if run.state.step > 0 else None for run in runs]
                if runs[0].sweep_id is None:
                    self._start(runs[0], saved[0][1] if saved[0] else None)
                else:
                    self._start_stack(runs, [s[1] if s else None for s in saved])

    def _start_stack(self, runs: list[Run], checkpoints: list[bytes | None]) -> None:
        """Sweep members trained as one stack in one worker: its events come back tagged with the member."""
        spec = StackSpec([run.run_config for run in runs], self.words, checkpoints, self.settings.checkpoint_every)
        for run in runs:
            self._publish(run, {"type": "status", "step": run.state.step, "status": "created", "message": ""})

        pacer = self._pacers.setdefault(runs[0].sweep_id, stacking.Pacer(min(r.run_config.stats_every for r in runs)))

        def on_event(event: dict) -> None:
            run = runs[event.pop("member")]
            self._on_event(run, event)
            if event["type"] == "status" and event["status"] not in ACTIVE:  # it left the stack; the others go on
                with run.settled:
                    run.worker = None
                    run.settled.notify_all()
            if event["type"] in ("scalars", "status"):
                with self._lock:
                    pacer.update()

        def on_exit(reason: str) -> None:
            with self._lock:
                pacer.remove(stack)
                for run in runs:
                    if isinstance(run.worker, stacking.MemberWorker) and run.worker.stack is stack:
                        self._on_exit(run, reason)
                self._fill_slots()

        stack = self.backend.start(runs[0].id, spec, on_event, on_exit)
        pacer.add(stack, runs)
        for member, run in enumerate(runs):
            run.worker = stacking.MemberWorker(stack, member)
            run.worker_info = run.worker.info

    def _start(self, run: Run, checkpoint: bytes | None) -> None:
        spec = RunSpec(run.run_config, self.words, checkpoint, self.settings.checkpoint_every)
        self._publish(run, {"type": "status", "step": run.state.step, "status": "created", "message": ""})
        run.worker = self.backend.start(run.id, spec, lambda event: self._on_event(run, event),
                                        lambda reason: self._on_exit(run, reason))  # fmt: skip
        run.worker_info = run.worker.info

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
                self._publish(run, {"type": "status", "step": saved[0] if saved else 0, "status": "interrupted",
                                    "message": f"{reason or 'the worker ended early'}; resume to continue {where}"})  # fmt: skip
            self._fill_slots()

    def _on_store_failure(self, run_ids: set[int], reason: str) -> None:
        for run_id in run_ids:
            run = self.runs.get(run_id)
            if run is not None and run.worker is not None:
                run.worker.send({"op": "fail", "message": reason})  # it ends `failed`, with the reason
            elif run is not None:
                run.state.status, run.state.message = "failed", reason

    # ---- control -----------------------------------------------------------------------------------
    def pause(self, run_id: int) -> Run:
        run = self._training(run_id, "pause", ("running", "created"))
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
            self._publish(run, {"type": "status", "step": run.state.step, "status": "queued",
                                "message": "waiting for a free slot"})  # fmt: skip
            self._fill_slots()
        return run

    def stop(self, run_id: int) -> Run:
        run = self.get(run_id)
        with self._lock:
            if run.state.status in ("interrupted", "queued") and run.worker is None:
                self._dequeue(run.id)
                self._publish(run, {"type": "status", "step": run.state.step, "status": "stopped",
                                    "message": f"stopped while {run.state.status}"})  # fmt: skip
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
        try:
            self.store.delete_run(run_id)
        except StoreFull as err:
            raise StorageFull(f"{err}; the run is kept: free some space and delete it again") from err
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

    # ---- samples --------------------------------------------------------------------------------------
    def sampler(self, run: Run):
        """(step, the run's network in eval mode) to sample from: live from its worker (weights at most
        WEIGHTS_FRESH_SECONDS old, or older ones while new ones come), else its last checkpoint."""
        if run.source != "trainer":
            raise Conflict(f"run {run.id} is a watched run: its network lives in the process that watches it")
        if run.worker is not None and run.state.status in ("running", "paused"):
            step, state = self._live_weights(run)
        else:
            saved = run.last_checkpoint or self.store.checkpoint(run.id)
            if saved is None:
                raise Conflict(f"run {run.id} has no saved weights yet")
            step, state = saved
        if run.sampler is None or run.sampler[0] != step:
            import torch

            from bnscope.train.trainer import load_model  # torch loads with the first sample, not with the server

            torch.set_num_threads(1)  # small batches: one thread is fastest, and leaves the cores to the workers

            run.sampler = (step, load_model(run.run_config, state))
        return run.sampler

    def samples(
        self,
        run_id: int,
        n: int,
        temperature: float,
        seed: int | None,
        prefix: str,
        max_len: int,
        one_at_a_time: bool = False,
    ) -> dict:
        from bnscope.train.sampling import sample_names

        run = self.get(run_id)
        step, model = self.sampler(run)
        if not all(bool(p.isfinite().all()) for p in model.parameters()):
            raise Conflict(f"run {run_id}'s weights are not finite (it diverged at step {step:,}): nothing to sample")
        names = sample_names(model, n, block_size=run.run_config.block_size, temperature=temperature, prefix=prefix,
                             seed=seed, max_len=max_len, train_words=self.splits(run.run_config.block_size).train_words,
                             one_at_a_time=one_at_a_time)  # fmt: skip
        return {"run_id": run.id, "step": step, "samples": names}

    def _live_weights(self, run: Run) -> tuple[int, bytes]:
        now = time.monotonic()
        held = run.weights
        if held is None or now - held[0] > WEIGHTS_FRESH_SECONDS:
            if now - run.weights_asked > WEIGHTS_FRESH_SECONDS:
                run.weights_asked = now
                run.worker.send({"op": "weights"})
            if held is None or now - held[0] > WEIGHTS_STALE_SECONDS:  # nothing usable: wait for the answer
                with run.settled:
                    run.settled.wait_for(lambda: run.weights is not held or run.worker is None, timeout=SETTLE_SECONDS)
                held = run.weights
        if held is None:
            if run.last_checkpoint is None:
                raise Conflict(f"run {run.id} has no weights yet")
            return run.last_checkpoint
        return held[1], held[2]

    def splits(self, block_size: int) -> Splits:
        if block_size not in self._splits:
            self._splits[block_size] = make_splits(self.words, block_size)
        return self._splits[block_size]

    # ---- reading back ---------------------------------------------------------------------------------
    def history(self, run_id: int, start: int = 0, end: int | None = None, max_points: int = HISTORY_POINTS,
                max_histograms: int = HISTORY_HISTOGRAMS, names: list[str] | None = None) -> dict:  # fmt: skip
        """Every series over [start, end) (default: the whole run) at one resolution, the statistics steps,
        the latest statistics and the timeline. `last_event_id`: where the live stream picks up."""
        run = self.get(run_id)
        self.writer.flush()  # what the workers sent so far is in the store, so the answer is current
        with self.store.reading():
            stored = self.store.run(run_id)
            end = end if end is not None else max(stored["step"], run.state.step, start + 1)
            answer = series_of(self.store, run_id, start, end, max_points, names)
            stats_steps = [s for s in self.store.stats_steps(run_id) if start <= s < end]
            latest = self.store.stats_at(run_id, stats_steps[-1]) if stats_steps else None
            timeline = self.store.timeline(run_id)
        return {"run": self.describe(run), "last_event_id": stored["last_event_id"], **answer,
                "stats_steps": evenly(stats_steps, max_histograms), "latest_stats": latest, "timeline": timeline}  # fmt: skip

    def stats_at(self, run_id: int, step: int) -> dict:
        self.get(run_id)
        stats = self.store.stats_at(run_id, step)
        if stats is None or stats["step"] >= self.store.last_stats_step(run_id):
            # the newest stored may not be the newest sent: wait for the writer. Older steps are final
            # (statistics are written in step order), so comparing a run with one far ahead never waits.
            self.writer.flush()
            stats = self.store.stats_at(run_id, step)
        if stats is None:
            raise NotFound(f"run {run_id} has no statistics recorded yet")
        return stats

    def histograms(self, run_id: int, kind: str, start: int = 0, end: int | None = None,
                   max_steps: int = HEATMAP_STEPS) -> dict:  # fmt: skip
        run = self.get(run_id)
        self.writer.flush()
        return histograms_of(self.store, run_id, kind, start, end if end is not None else run.state.step + 1, max_steps)

    def export(self, run_id: int, fmt: str) -> io.TextIOBase:
        """Every series of the run, raw, as CSV or JSON, in a spooled temporary file (read from the start)."""
        import tempfile

        run = self.get(run_id)
        self.writer.flush()
        out = tempfile.SpooledTemporaryFile(max_size=8 * 2**20, mode="w+", newline="")
        with self.store.reading():
            export_csv(self.store, run_id, out) if fmt == "csv" else export_json(self.store, run_id, self.describe(run), out)
        out.seek(0)
        return out


def run_from_row(store: Store, row: dict) -> Run:
    """A run as its stored row says, its channel's event ids continuing above the ones it reserved.
    (Also how bnscope.watch records a run into a data directory without a server.)"""
    state = RunState(status=row["status"], message=row["message"], step=row["step"], lr=row["lr"])
    last_id = max(row["last_event_id"], row["reserved_event_id"])
    channel = Channel(last_id, row["last_event_id"], reserve=lambda ceiling, run_id=row["id"]: store.reserve_ids(run_id, ceiling))
    return Run(id=row["id"], name=row["name"], source=row["source"], config=row["config"],
               paired_with=row["paired_with"], sweep_id=row["sweep_id"], created_at=row["created_at"],
               state=state, channel=channel, model=row["model"])  # fmt: skip


def publish(run: Run, event: dict, writer: StoreWriter) -> None:
    """Fold, number, stream and store one event of a run, under the run's lock, so ids reach the store
    in order. The one path every event takes: a worker's, the service's own, a watched run's."""
    assert event["type"] not in INTERNAL
    event.setdefault("time", time.time())  # wall clock: the timeline, and how old a point is when a client gets it
    points = series_points(event)
    with run.settled:
        changed = run.state.apply(event)
        if event["type"] == "model":
            run.model = {key: event[key] for key in ("activations", "weights", "norms")}
        elif event["type"] == "scalars":
            run.recent.add(event)
        health = run.recent.badges(event) if event["type"] == "stats" else None
        text = to_json(wire(event, points, run.state if changed else None, health))
        message = run.channel.publish(event["type"], text)
        writer.event(run.id, message.id, event, text, points, run.state.as_dict() if changed else None)
        if changed:
            run.settled.notify_all()


def _differs(config: dict, partner: dict) -> dict:
    return {key: value for key, value in config.items() if partner.get(key) != value}


def _layer_names(model: dict | None) -> dict:
    model = model or {"activations": [], "weights": [], "norms": []}
    return {group: [entry["name"] for entry in model[group]] for group in ("activations", "weights", "norms")}
