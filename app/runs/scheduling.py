"""The runs service's queue and slots (a part of bnscope.runs.service.RunService): what waits, oldest
first, and what starts while a slot is free: a run alone in a worker, or a stack of sweep members in one
(planned by bnscope.runs.stacking, kept in lockstep by its Pacer)."""

from bnscope.events import ACTIVE, status_event
from bnscope.runs import stacking
from bnscope.runs.errors import QueueFull
from bnscope.runs.run import Run
from bnscope.train.worker import RunSpec, StackSpec


class Scheduling:
    """RunService's queue and slots (self is the service: its queue, runs, backend, lock and pacers)."""

    def _stacks(self, runs: list[Run]) -> list[list[int]]:
        free = self.settings.max_runs - self._training_count()
        return stacking.plan([(run.id, run.run_config) for run in runs], max(1, free))

    def _check_queue_room(self, count: int) -> None:
        free = self.settings.max_runs - self._training_count()
        waiting = len(self.queue) + max(0, count - free)
        if waiting > self.settings.max_queued:
            raise QueueFull(
                f"{len(self.queue)} runs are already waiting for one of {self.settings.max_runs} slots "
                f"(max_queued {self.settings.max_queued}); try again when some have started"
            )

    def _training_count(self) -> int:
        """Slots in use: a worker each, whether it trains one run or a stack of them."""
        return len(
            {id(getattr(run.worker, "slot", run.worker)) for run in self.runs.values() if run.worker is not None}
        )

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
                saved = [
                    (run.last_checkpoint or self.store.checkpoint(run.id)) if run.state.step > 0 else None
                    for run in runs
                ]
                if runs[0].sweep_id is None:
                    self._start(runs[0], saved[0][1] if saved[0] else None)
                else:
                    self._start_stack(runs, [s[1] if s else None for s in saved])

    def _start_stack(self, runs: list[Run], checkpoints: list[bytes | None]) -> None:
        """Sweep members trained as one stack in one worker: its events come back tagged with the member."""
        spec = StackSpec([run.run_config for run in runs], self.words, checkpoints, self.settings.checkpoint_every)
        for run in runs:
            self._publish(run, status_event(run.state.step, "created"))

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
        self._publish(run, status_event(run.state.step, "created"))
        run.worker = self.backend.start(
            run.id, spec, lambda event: self._on_event(run, event), lambda reason: self._on_exit(run, reason)
        )
        run.worker_info = run.worker.info
