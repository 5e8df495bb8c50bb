"""The runs service: create (or pair), control, sample, read back. Routes call this; it owns
the training threads, each run's event channel, and the store writer."""

import io
import threading
import time
from dataclasses import dataclass, field

import torch

from bnscope.config import RunConfig, Settings
from bnscope.data import VOCAB_SIZE, Splits, make_splits
from bnscope.history import cadence_of, decimation_level, evenly, layer_names
from bnscope.hub import Channel
from bnscope.sampling import sample_names
from bnscope.store import Store
from bnscope.trainer import Trainer
from bnscope.writer import StoreWriter
from bnscope.models import MLP

ACTIVE = ("created", "running", "paused")  # a training thread exists
CHECKPOINT_ON = ("paused", "stopped", "finished", "diverged")
HISTORY_POINTS = 2000  # points per series in a history answer (W&B draws <= 1,500 a line)
HISTORY_HISTOGRAMS = 500  # statistics steps listed (TensorBoard keeps 500 histograms a tag)


class NotFound(LookupError):
    pass


class Conflict(RuntimeError):
    """The action does not fit the run's state (e.g. resuming a finished run)."""


class TooManyRuns(RuntimeError):
    pass


@dataclass(eq=False)
class Run:
    id: int
    name: str
    config: RunConfig
    paired_with: int | None
    created_at: float
    status: str
    message: str
    step: int
    lr: float
    channel: Channel
    trainer: Trainer | None = None
    thread: threading.Thread | None = None
    next_checkpoint: int = 0
    weights: tuple[int, torch.nn.Module] | None = field(default=None, repr=False)  # (step, eval model) cache


class RunService:
    def __init__(self, store: Store, words: list[str], settings: Settings):
        self.store = store
        self.words = words
        self._splits: dict[int, Splits] = {}  # by block_size: runs may differ in context length
        self.settings = settings
        self.writer = StoreWriter(store, self._on_store_failure)
        self._lock = threading.Lock()  # guards self.runs and the active-run cap
        store.mark_interrupted()
        self.runs: dict[int, Run] = {row["id"]: self._run_from_row(row) for row in store.runs()}

    def splits(self, block_size: int) -> Splits:
        if block_size not in self._splits:
            self._splits[block_size] = make_splits(self.words, block_size)
        return self._splits[block_size]

    @staticmethod
    def _run_from_row(row: dict) -> Run:
        config = RunConfig(**row["config"])
        return Run(
            id=row["id"], name=row["name"], config=config, paired_with=row["paired_with"],
            created_at=row["created_at"], status=row["status"], message=row["message"], step=row["step"],
            lr=row["lr"] if row["lr"] is not None else config.lr, channel=Channel(last_id=row["last_event_id"]),
        )  # fmt: skip

    # ---- reading --------------------------------------------------------------------------------
    def get(self, run_id: int) -> Run:
        try:
            return self.runs[run_id]
        except KeyError:
            raise NotFound(f"no run with id {run_id}") from None

    def list(self) -> list[Run]:
        return list(self.runs.values())

    def describe(self, run: Run) -> dict:
        trainer = run.trainer
        step = trainer.step if trainer else run.step
        steps_per_s = trainer.steps_per_s if trainer and run.status == "running" else 0.0
        partner = self.runs.get(run.paired_with) if run.paired_with else None
        return {
            "id": run.id, "name": run.name, "status": run.status, "message": run.message,
            "step": step, "steps": run.config.steps, "steps_per_s": steps_per_s,
            "eta_s": (run.config.steps - step) / steps_per_s if steps_per_s > 0 else None,
            "lr": trainer.lr if trainer else run.lr, "config": run.config.model_dump(),
            "paired_with": run.paired_with, "differs": self._differs(run.config, partner.config) if partner else {},
            "layers": layer_names(run.config), "created_at": run.created_at, "last_event_id": run.channel.last_id,
        }  # fmt: skip

    @staticmethod
    def _differs(config: RunConfig, partner: RunConfig) -> dict:
        mine, theirs = config.model_dump(), partner.model_dump()
        return {key: value for key, value in mine.items() if theirs[key] != value}

    # ---- creating and controlling ----------------------------------------------------------------
    def create(self, overrides: dict, paired_with: int | None = None, name: str | None = None) -> Run:
        """A new run with the default config plus `overrides`, or, paired with another run, that
        run's config (same seed, same batch order) plus `overrides`, trained from step 0."""
        base = self.get(paired_with).config.model_dump() if paired_with is not None else {}
        config = RunConfig(**{**base, **overrides})
        with self._lock:
            if sum(run.status in ACTIVE for run in self.runs.values()) >= self.settings.max_runs:
                raise TooManyRuns(
                    f"{self.settings.max_runs} runs are already training; stop or delete one first (limit: max_runs)"
                )
            if name is None:
                name = "default" if not overrides and paired_with is None else ", ".join(
                    f"{key}={value}" for key, value in overrides.items()
                ) or "copy"  # fmt: skip
            run_id = self.store.create_run(name, config.model_dump(), paired_with, config.lr)
            run = Run(id=run_id, name=name, config=config, paired_with=paired_with, created_at=time.time(),
                      status="created", message="", step=0, lr=config.lr, channel=Channel())  # fmt: skip
            self.runs[run_id] = run
            self._start(run, checkpoint=None)
        return run

    def _start(self, run: Run, checkpoint: dict | None) -> None:
        trainer = Trainer(run.config, self.splits(run.config.block_size), emit=lambda event: self._on_event(run, event))
        if checkpoint is not None:
            trainer.load_state_dict(checkpoint)
        run.trainer, run.status, run.message = trainer, "created", ""
        run.next_checkpoint = trainer.step + self.settings.checkpoint_every
        run.thread = threading.Thread(target=trainer.run, name=f"run-{run.id}", daemon=True)
        run.thread.start()

    def _on_event(self, run: Run, event: dict) -> None:
        """On the training thread: publish to live clients, hand to the store. Never blocks."""
        event["time"] = time.time()  # wall clock, for the timeline and for measuring event latency
        message = run.channel.publish(event)
        self.writer.event(run.id, message, event, run.config)
        kind = event["type"]
        if kind == "status":
            run.status, run.message, run.step = event["status"], event["message"], event["step"]
            if event["status"] in CHECKPOINT_ON:
                self.writer.checkpoint(run.id, run.trainer.state_dict())
        elif kind == "scalars":
            run.step, run.lr = event["step"] + len(event["loss"]), event["lr"]
            if run.step >= run.next_checkpoint:
                run.next_checkpoint = run.step + self.settings.checkpoint_every
                self.writer.checkpoint(run.id, run.trainer.state_dict())

    def _on_store_failure(self, run_ids: set[int], reason: str) -> None:
        for run_id in run_ids:
            run = self.runs.get(run_id)
            if run is None:
                continue
            if run.trainer is not None and run.status in ACTIVE:
                run.trainer.fail(reason)  # its status event reaches the page; the store may not take it
            else:
                run.status, run.message = "failed", reason

    def pause(self, run_id: int) -> Run:
        run = self._require(run_id, ("running", "created"), "pause")
        run.trainer.pause()
        return self._settled(run, ("paused",))

    @staticmethod
    def _settled(run: Run, statuses: tuple[str, ...], timeout: float = 2.0) -> Run:
        """Wait (a step or so) until the training thread has acted, so the answer shows the new status."""
        deadline = time.monotonic() + timeout
        while run.status not in statuses and run.status in ACTIVE and time.monotonic() < deadline:
            time.sleep(0.002)
        return run

    def resume(self, run_id: int) -> Run:
        run = self.get(run_id)
        if run.status == "paused":
            run.trainer.resume()
            return self._settled(run, ("running",))
        if run.status != "interrupted":
            raise Conflict(f"run {run_id} is {run.status}; only a paused or interrupted run can be resumed")
        with self._lock:
            if sum(r.status in ACTIVE for r in self.runs.values()) >= self.settings.max_runs:
                raise TooManyRuns(f"{self.settings.max_runs} runs are already training (limit: max_runs)")
            saved = self.store.checkpoint(run_id)
            state = torch.load(io.BytesIO(saved[1]), weights_only=True) if saved else None
            self._start(run, state)  # no checkpoint yet: start over, which is the same run by its seed
        return run

    def stop(self, run_id: int) -> Run:
        run = self.get(run_id)
        if run.status == "interrupted":
            run.status = "stopped"
            self.store.set_status(run_id, "stopped", "stopped while interrupted")
            return run
        run = self._require(run_id, ACTIVE, "stop")
        run.trainer.stop()
        return self._settled(run, ("stopped",))

    def set_lr(self, run_id: int, lr: float) -> Run:
        run = self._require(run_id, ACTIVE, "change the learning rate of")
        run.trainer.set_lr(lr)
        run.lr = lr
        return run

    def _require(self, run_id: int, statuses: tuple[str, ...], action: str) -> Run:
        run = self.get(run_id)
        if run.status not in statuses or run.trainer is None:
            raise Conflict(f"cannot {action} run {run_id}: it is {run.status}")
        return run

    def delete(self, run_id: int) -> None:
        run = self.get(run_id)
        if run.trainer is not None:
            run.trainer.stop()
            run.thread.join(timeout=30)
        with self._lock:
            self.runs.pop(run_id, None)
        self.writer.flush()  # its last events are written before the rows go
        self.store.delete_run(run_id)

    def shutdown(self) -> None:
        """Stop every training thread between steps; their last events and checkpoints are written."""
        for run in list(self.runs.values()):
            if run.trainer is not None and run.status in ACTIVE:
                run.trainer.stop()
        for run in list(self.runs.values()):
            if run.thread is not None:
                run.thread.join(timeout=30)
        self.writer.flush()
        self.writer.close()

    # ---- samples and history ---------------------------------------------------------------
    def samples(self, run_id: int, n: int, temperature: float, seed: int | None, prefix: str, max_len: int) -> dict:
        run = self.get(run_id)
        step, model = self._weights(run)
        names = sample_names(model, n, block_size=run.config.block_size, temperature=temperature, prefix=prefix,
                             seed=seed, max_len=max_len, train_words=self.splits(run.config.block_size).train_words)  # fmt: skip
        return {"run_id": run.id, "step": step, "samples": names}

    def _weights(self, run: Run) -> tuple[int, torch.nn.Module]:
        """The run's current network in eval mode: live from its trainer, else its last checkpoint."""
        if run.trainer is not None:
            return run.trainer.snapshot()
        saved = self.store.checkpoint(run.id)
        if saved is None:
            raise Conflict(f"run {run.id} has no saved weights yet")
        if run.weights is None or run.weights[0] != saved[0]:
            state = torch.load(io.BytesIO(saved[1]), weights_only=True)
            model = MLP(vocab_size=VOCAB_SIZE, **run.config.model_kwargs())
            model.load_state_dict(state["model"])
            run.weights = (saved[0], model.eval())
        return run.weights

    def history(self, run_id: int, max_points: int = HISTORY_POINTS, max_histograms: int = HISTORY_HISTOGRAMS) -> dict:
        """Everything recorded so far, each series decimated evenly to <= max_points (first and
        last kept), statistics steps to <= max_histograms. `last_event_id` tells the live stream
        where to pick up."""
        run = self.get(run_id)
        self.writer.flush()  # what the trainer emitted so far is in the store, so the answer is current
        with self.store.reading():
            stored = self.store.run(run_id)
            series = {}
            for name in self.store.series_names(run_id):
                count = self.store.last_step(run_id, name) // cadence_of(name, run.config) + 1
                steps, values = self.store.series(run_id, name, decimation_level(count, max_points))
                series[name] = {"steps": steps, "values": values}
            stats_steps = self.store.stats_steps(run_id)
            latest = self.store.stats_at(run_id, stats_steps[-1]) if stats_steps else None
            timeline = self.store.timeline(run_id)
        return {
            "run": self.describe(run), "last_event_id": stored["last_event_id"], "series": series,
            "stats_steps": evenly(stats_steps, max_histograms), "latest_stats": latest, "timeline": timeline,
        }  # fmt: skip

    def stats_at(self, run_id: int, step: int) -> dict:
        self.get(run_id)
        self.writer.flush()
        stats = self.store.stats_at(run_id, step)
        if stats is None:
            raise NotFound(f"run {run_id} has no statistics recorded yet")
        return stats
