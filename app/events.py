"""The events a run produces, written down once: the trainer and `watch()` make them, the store
keeps them, the stream sends them, and the page draws them. Every other module follows these types.

An event is a JSON-ready dict with a `type` and a `step`:

  model    the layers the run reports (names and kinds), once when training starts or resumes
  status   the run's status changed (Status), with a message for the user
  control  a user action took effect between steps: pause, resume, stop, lr
  scalars  every step's minibatch loss since the last scalars event (`step` is the first one's),
           the update:data ratios measured at their cadence, the learning rate and steps/s
  metrics  values a watched run logged for one step (`run.log(acc=...)`)
  stats    activation / gradient / weight / normalisation statistics at one step
  eval     the loss on a whole split in eval mode (dev at its cadence; train/dev/test at the end)

The stream alone sends one more, made by the server and never stored:
  reset    the events a client asked to resume after are no longer held: what it holds is out of date,
           /history has them; the stream goes on, complete from `after` on (ResetEvent, `reset`)

Two more travel from a worker to the server only, never to the store's tables or a client:
  checkpoint  everything a resumed run needs (torch.save bytes), at its cadence and when training stops
  weights     the network's weights (torch.save bytes) that live samples are drawn from

From events the server derives, once, two things every reader uses:
  series_points(event)  the named time series ("loss", "saturation/tanh3", ...) an event adds to
  RunState.apply(event) the run's status, step, lr, steps/s after the event
  health.Recent         a stats event's health badges, judged by the server's rules, and what none judges
The stream sends each event with them (see `wire`), and the store keeps them, so the page never
rebuilds them.
"""

from dataclasses import dataclass
from typing import Annotated, Literal, NotRequired

from annotated_types import Ge, Len, MaxLen

from typing_extensions import TypedDict  # pydantic (the OpenAPI schema) needs it before Python 3.12

Status = Literal["queued", "created", "running", "paused", "finished", "stopped", "diverged", "failed", "interrupted"]
ACTIVE: tuple[Status, ...] = ("created", "running", "paused")  # a worker holds the run
ENDED: tuple[Status, ...] = ("finished", "stopped", "diverged", "failed")  # nothing more will happen
PRODUCING: tuple[Status, ...] = ("queued", *ACTIVE)  # more events may come
BROKEN: tuple[Status, ...] = ("diverged", "failed")  # ended by what went wrong, at the step it did
EXPLAINED: tuple[Status, ...] = ("queued", "interrupted", "stopped", *BROKEN)  # the message says why it is so
# the statuses each user action fits (bnscope.runs.service; the page's buttons follow it through /api/meta)
ACTIONS: dict[str, tuple[Status, ...]] = {
    "pause": ("running", "created"),
    "resume": ("paused", "interrupted"),  # a paused run goes on; an interrupted one is queued from its checkpoint
    "stop": (*ACTIVE, "interrupted", "queued"),
    "lr": ACTIVE,
}
INTERNAL = ("checkpoint", "weights")  # worker -> server only

# bounds a server checks on events it did not make itself (a watched run's, bnscope.watch)
Name = Annotated[str, Len(1, 200)]
Step = Annotated[int, Ge(0)]
Hist = Annotated[list[int], MaxLen(256)]
Range = Annotated[list[float | None], Len(2, 2)]
MANY = 4096  # layers, weights, norms, values a step


# ---- the layers a run reports -------------------------------------------------------------------
class LayerInfo(TypedDict):
    # the lecture's names for its network ('tanh3', 'linear2', 'batchnorm1', 'C'); a watched model's qualified names
    name: Name
    kind: Annotated[str, MaxLen(40)]  # 'tanh', 'relu', 'linear', 'embedding', 'batchnorm', 'layernorm', ...


class ModelEvent(TypedDict):
    type: Literal["model"]
    step: Step
    activations: Annotated[list[LayerInfo], MaxLen(MANY)]  # activation modules, in forward order
    weights: Annotated[
        list[LayerInfo], MaxLen(MANY)
    ]  # weight matrices and kernels (>= 2-D): gradients, grad:data, update:data
    norms: Annotated[list[LayerInfo], MaxLen(MANY)]  # normalisation layers: running statistics, affine parameters


# ---- what happens to the run ----------------------------------------------------------------------
class StatusEvent(TypedDict):
    type: Literal["status"]
    step: Step
    status: Status
    message: Annotated[str, MaxLen(1000)]


def model_event(step: int, layers: dict) -> "ModelEvent":
    """A `model` event from the layers' names and kinds (Layers.info())."""
    return {"type": "model", "step": step, **layers}


def control_event(step: int, action: str, lr: float | None = None) -> "ControlEvent":
    """A `control` event: a user's action took effect before `step` (with the new lr for action 'lr')."""
    event: dict = {"type": "control", "step": step, "action": action}
    if lr is not None:
        event["lr"] = lr
    return event


def scalars_event(
    step: int, loss: list, lr: float | None, steps_per_s: float, ud_names: list, ud_steps: list, ud: list
) -> "ScalarsEvent":
    """A `scalars` event: the losses from `step` on, and the update:data rows measured meanwhile."""
    return {
        "type": "scalars",
        "step": step,
        "loss": loss,
        "lr": lr,
        "steps_per_s": steps_per_s,
        "ud_names": ud_names,
        "ud_steps": ud_steps,
        "ud": ud,
    }


def stats_event(step: int, body: dict) -> "StatsEvent":
    """A `stats` event from a statistics sample's body (bnscope.train.diagnostics.collect)."""
    return {"type": "stats", "step": step, **body}


def eval_event(step: int, split: str, loss: float | None, final: bool = False) -> "EvalEvent":
    """An `eval` event: a whole split's loss in eval mode (final: at the end of training)."""
    event: dict = {"type": "eval", "step": step, "split": split, "loss": loss}
    if final:
        event["final"] = True
    return event


def status_event(step: int, status: Status, message: str = "") -> StatusEvent:
    """A `status` event: built here only, by a trainer and by the server (queued, interrupted at start-up,
    failed when the store could not save a run)."""
    return {"type": "status", "step": step, "status": status, "message": message}


class ReportedStatusEvent(TypedDict):
    """A status a watched run's own process may report (bnscope decides the others: queued, interrupted...)."""

    type: Literal["status"]
    step: Step
    status: Literal["running", "paused", "finished", "stopped", "failed"]
    message: Annotated[str, MaxLen(1000)]


class ControlEvent(TypedDict):
    type: Literal["control"]
    step: int
    action: Literal["pause", "resume", "stop", "lr"]
    lr: NotRequired[float]  # with action 'lr': the new base learning rate


class ScalarsEvent(TypedDict):
    type: Literal["scalars"]
    step: Step  # the step of loss[0]
    loss: Annotated[
        list[float | None], MaxLen(100_000)
    ]  # one minibatch loss a step: steps step .. step + len(loss) - 1
    lr: float | None
    steps_per_s: float  # 0 until measured after a warm-up
    ud_names: Annotated[list[Name], MaxLen(MANY)]  # the weights update:data is measured for...
    ud_steps: Annotated[list[Step], MaxLen(10_000)]  # ...the steps it was measured at...
    ud: Annotated[
        list[Annotated[list[float | None], MaxLen(MANY)]], MaxLen(10_000)
    ]  # ...log10(std(lr*grad)/std(w)) a row a step (None: gradient all 0)


class MetricsEvent(TypedDict):
    type: Literal["metrics"]
    step: Step
    values: Annotated[dict[Name, float | None], MaxLen(MANY)]


class EvalEvent(TypedDict):
    type: Literal["eval"]
    step: Step
    split: Literal["train", "dev", "test"]
    loss: float | None
    final: NotRequired[bool]


# ---- statistics at one step -----------------------------------------------------------------------
class ActivationStats(TypedDict):
    name: Name
    kind: Annotated[str, MaxLen(40)]
    units: int  # features (2-D outputs, 3-D: the last dim) or channels (4-D and up: dim 1)
    mean: float | None
    std: float | None
    # % of outputs in the flat part of the function (tanh |t| > 0.97, sigmoid < 0.03 or > 0.97, ReLU family <= 0)
    saturation: float
    dead: int  # units saturated for every example of the batch: they pass no gradient
    hist: Hist  # HIST_BINS counts over `range`
    range: Range  # [lo, hi]
    grad_mean: float | None  # the loss's gradient w.r.t. the output (None: not measured)
    grad_std: float | None
    grad_hist: Hist
    grad_range: Range
    image: NotRequired[
        Annotated[list[Annotated[str, MaxLen(1024)]], MaxLen(1024)]
    ]  # tanh layers of 2-D outputs: the lecture's |t| > 0.99 image, a hex row an example


class WeightStats(TypedDict):
    name: Name
    kind: Annotated[str, MaxLen(40)]
    shape: Annotated[list[int], MaxLen(8)]
    data_std: float | None
    grad_mean: float | None
    grad_std: float | None
    grad_to_data: float | None  # std(grad) / std(weight)
    grad_hist: Hist
    grad_range: Range


class NormStats(TypedDict):
    name: Name
    kind: Annotated[str, MaxLen(40)]
    # BatchNorm: running statistics (the vectors and their means across channels)
    running_mean: NotRequired[Annotated[list[float | None], MaxLen(MANY)]]
    running_var: NotRequired[Annotated[list[float | None], MaxLen(MANY)]]
    mean_of_running_mean: NotRequired[float | None]
    mean_of_running_var: NotRequired[float | None]
    # affine parameters (the lecture's bngain / bnbias: torch's `weight` / `bias`)
    gain_mean: NotRequired[float | None]
    gain_std: NotRequired[float | None]
    bias_mean: NotRequired[float | None]
    bias_std: NotRequired[float | None]


class HealthBadge(TypedDict):
    rule: str  # a rule of bnscope.health (GET /api/health/rules)
    label: str  # the layer or weight it judges
    value: float
    level: Literal["ok", "amber", "red"]


class NotJudged(TypedDict):
    quantity: str  # what a stats event shows of it: saturation, dead, activation_std, gradient_flow, update_to_data
    label: str  # the layer, weight or layer pair: no rule was calibrated on its kind (bnscope.health.not_judged)


class StatsEvent(TypedDict):
    type: Literal["stats"]
    step: Step
    activations: Annotated[list[ActivationStats], MaxLen(MANY)]
    weights: Annotated[list[WeightStats], MaxLen(MANY)]
    norms: Annotated[list[NormStats], MaxLen(MANY)]
    health: NotRequired[Annotated[list[HealthBadge], MaxLen(4 * MANY)]]  # the server's verdicts (it sets them)
    not_judged: NotRequired[Annotated[list[NotJudged], MaxLen(4 * MANY)]]  # what no rule judges (the server sets it)


class CheckpointEvent(TypedDict):
    type: Literal["checkpoint"]
    step: int
    state: bytes


class WeightsEvent(TypedDict):
    type: Literal["weights"]
    step: int
    state: bytes


class ResetEvent(TypedDict):
    type: Literal["reset"]
    after: int  # the stream holds every event after this id; the ones before are in /history


def reset(after: int) -> ResetEvent:
    """The stream's `reset`: built here only."""
    return {"type": "reset", "after": after}


# what a watched run's process may send (bnscope.watch): everything but the worker-only events
# (no pydantic here: a watched run's recording process loads this module, and pydantic costs it ~0.1 s
# of CPU; bnscope.api.schemas tells pydantic to tell them apart by "type")
Reported = ModelEvent | ReportedStatusEvent | ScalarsEvent | MetricsEvent | EvalEvent | StatsEvent

Event = (
    ModelEvent
    | StatusEvent
    | ControlEvent
    | ScalarsEvent
    | MetricsEvent
    | EvalEvent
    | StatsEvent
    | CheckpointEvent
    | WeightsEvent
)

# what a client of a run's stream receives (each with what `wire` adds): every event but the worker-only ones, and reset
Streamed = ModelEvent | StatusEvent | ControlEvent | ScalarsEvent | MetricsEvent | EvalEvent | StatsEvent | ResetEvent


# ---- derived: time series -------------------------------------------------------------------------
# per activation layer, per weight and per norm layer: (series prefix, the stats key it reads)
ACTIVATION_SERIES = (
    ("saturation", "saturation"),
    ("dead", "dead"),
    ("act_mean", "mean"),
    ("act_std", "std"),
    ("grad_std", "grad_std"),
)
WEIGHT_SERIES = (("grad_to_data", "grad_to_data"),)
NORM_SERIES = (
    ("running_mean", "mean_of_running_mean"),
    ("running_var", "mean_of_running_var"),
    ("norm_gain", "gain_mean"),
)

Point = tuple[str, int, float]  # (series name, step, value)


def series_points(event: dict) -> list[Point]:
    """The (series, step, value) points an event adds. Series names:
      loss, lr, dev_loss, update_to_data/<weight>, metric/<name>,
      saturation|dead|act_mean|act_std|grad_std/<activation>, grad_to_data/<weight>,
      running_mean|running_var|norm_gain/<norm>
    Values that are None or not finite (log10 of a zero gradient) give no point."""
    kind, step = event["type"], event["step"]
    points: list[Point] = []
    if kind == "scalars":
        points += [("loss", step + offset, loss) for offset, loss in enumerate(event["loss"])]
        if event["loss"]:
            points.append(("lr", step, event["lr"]))
        for at, row in zip(event["ud_steps"], event["ud"]):
            points += [(f"update_to_data/{name}", at, value) for name, value in zip(event["ud_names"], row)]
    elif kind == "metrics":
        points += [
            ("loss" if name == "loss" else f"metric/{name}", step, value) for name, value in event["values"].items()
        ]
    elif kind == "stats":
        for entries, table in (
            (event["activations"], ACTIVATION_SERIES),
            (event["weights"], WEIGHT_SERIES),
            (event["norms"], NORM_SERIES),
        ):
            for entry in entries:
                points += [(f"{prefix}/{entry['name']}", step, entry[key]) for prefix, key in table if key in entry]
    elif kind == "eval" and event["split"] == "dev" and not event.get("final"):
        points.append(("dev_loss", step, event["loss"]))
    return [p for p in points if isinstance(p[2], (int, float)) and p[2] == p[2] and abs(p[2]) != float("inf")]


# ---- derived: the run's state -----------------------------------------------------------------------
@dataclass
class RunState:
    """What a run's events say about it now. The runs service, the store and the stream fold the same
    events with this one function (the page receives the result with each event: see `wire`)."""

    status: Status = "created"
    message: str = ""
    step: int = 0  # steps done
    lr: float | None = None
    steps_per_s: float = 0.0

    def apply(self, event: dict) -> bool:
        """Fold one event in; True when something a reader shows changed."""
        kind = event["type"]
        if kind == "status":
            self.status, self.message, self.step = event["status"], event["message"], event["step"]
            if self.status != "running":
                self.steps_per_s = 0.0
        elif kind == "scalars":
            self.step, self.lr, self.steps_per_s = event["step"] + len(event["loss"]), event["lr"], event["steps_per_s"]
        elif kind == "metrics":
            self.step = max(self.step, event["step"] + 1)
        elif kind == "control" and event["action"] == "lr":
            self.lr = event["lr"]
        else:
            return False
        return True

    def as_dict(self) -> dict:
        return dict(
            vars(self)
        )  # its fields are plain values: dataclasses.asdict's deep copy costs 30x more, on every event


def wire(event: dict, points: list[Point], state: RunState | None, judged: dict | None = None) -> dict:
    """An event as the stream sends it: the event itself, plus `points` (its series points grouped by
    series: {name: {"steps": [...], "values": [...]}}, the shape /history and the export give series in),
    when it changed the run's state `run` (RunState), and for a stats event what the server's rules make
    of it (bnscope.health.Recent.judged): `health`, its badges ([{rule, label, value, level}]), and
    `not_judged` ([{quantity, label}])."""
    grouped: dict[str, dict[str, list]] = {}
    for name, step, value in points:
        series = grouped.setdefault(name, {"steps": [], "values": []})
        series["steps"].append(step)
        series["values"].append(value)
    out = {**event, "points": grouped}
    if state is not None:
        out["run"] = state.as_dict()
    return out | (judged or {})
