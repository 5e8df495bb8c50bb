"""A run as the server holds it (its state, its channel, its worker), and `publish`, the one path every
one of its events takes: folded into its state, numbered, streamed and stored."""

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bnscope.events import INTERNAL, RunState, series_points, wire
from bnscope.health import Recent
from bnscope.jsonenc import to_json
from bnscope.storage.store import Store
from bnscope.storage.writer import StoreWriter
from bnscope.stream.hub import Channel

if TYPE_CHECKING:  # a watched run's recording process loads neither (pydantic-settings, the trainer): ~0.1 s of CPU
    from bnscope.config import RunConfig
    from bnscope.runs.workers import Worker

SETTLE_SECONDS = 5.0  # how long a control request waits for the worker to act (a step, or a dev evaluation)


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
    worker: "Worker | None" = None
    worker_info: dict | None = None  # where it trains (or trained last)
    settled: threading.Condition = field(default_factory=threading.Condition)  # notified at every status change
    weights: tuple[float, int, bytes] | None = field(default=None, repr=False)  # (received at, step, bytes)
    weights_asked: float = 0.0
    last_checkpoint: tuple[int, bytes] | None = field(default=None, repr=False)  # the newest one its worker sent
    recent: Recent = field(default_factory=Recent)  # what its next stats event's health badges are judged on
    sampler: tuple[int, object] | None = field(default=None, repr=False)  # (step, eval model) built from weights

    @property
    def run_config(self) -> "RunConfig":
        from bnscope.config import RunConfig

        return RunConfig(**self.config)


def run_from_row(store: Store, row: dict) -> Run:
    """A run as its stored row says, its channel's event ids continuing above the ones it reserved.
    (Also how bnscope.watch records a run into a data directory without a server.)"""
    state = RunState(status=row["status"], message=row["message"], step=row["step"], lr=row["lr"])
    last_id = max(row["last_event_id"], row["reserved_event_id"])
    channel = Channel(
        last_id, row["last_event_id"], reserve=lambda ceiling, run_id=row["id"]: store.reserve_ids(run_id, ceiling)
    )
    return Run(
        id=row["id"],
        name=row["name"],
        source=row["source"],
        config=row["config"],
        paired_with=row["paired_with"],
        sweep_id=row["sweep_id"],
        created_at=row["created_at"],
        state=state,
        channel=channel,
        model=row["model"],
    )


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
        judged = run.recent.judged(event) if event["type"] == "stats" else None
        text = to_json(wire(event, points, run.state if changed else None, judged))
        message = run.channel.publish(event["type"], text)
        writer.event(run.id, message.id, event, text, points, run.state.as_dict() if changed else None)
        if changed:
            run.settled.notify_all()
