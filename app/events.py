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

Two more travel from a worker to the server only, never to the store's tables or a client:
  checkpoint  everything a resumed run needs (torch.save bytes), at its cadence and when training stops
  weights     the network's weights (torch.save bytes) that live samples are drawn from

From events the server derives, once, two things every reader uses:
  series_points(event)  the named time series ("loss", "saturation/tanh3", ...) an event adds to
  RunState.apply(event) the run's status, step, lr, steps/s after the event
The stream sends each event with both (see `wire`), so the page never rebuilds them.
"""

from dataclasses import asdict, dataclass
from typing import Literal, NotRequired

from typing_extensions import TypedDict  # pydantic (the OpenAPI schema) needs it before Python 3.12

Status = Literal["queued", "created", "running", "paused", "finished", "stopped", "diverged", "failed", "interrupted"]
ACTIVE: tuple[Status, ...] = ("created", "running", "paused")  # a worker holds the run
ENDED: tuple[Status, ...] = ("finished", "stopped", "diverged", "failed")  # nothing more will happen
INTERNAL = ("checkpoint", "weights")  # worker -> server only


# ---- the layers a run reports -------------------------------------------------------------------
class LayerInfo(TypedDict):
    name: str  # the lecture's names for its network ('tanh3', 'linear2', 'batchnorm1', 'C'); a watched model's qualified names
    kind: str  # 'tanh', 'relu', 'linear', 'embedding', 'batchnorm', 'layernorm', ...


class ModelEvent(TypedDict):
    type: Literal["model"]
    step: int
    activations: list[LayerInfo]  # activation modules, in forward order
    weights: list[LayerInfo]  # weight matrices and kernels (>= 2-D): gradients, grad:data, update:data
    norms: list[LayerInfo]  # normalisation layers: running statistics, affine parameters


# ---- what happens to the run ----------------------------------------------------------------------
class StatusEvent(TypedDict):
    type: Literal["status"]
    step: int
    status: Status
    message: str


class ControlEvent(TypedDict):
    type: Literal["control"]
    step: int
    action: Literal["pause", "resume", "stop", "lr"]
    lr: NotRequired[float]  # with action 'lr': the new base learning rate


class ScalarsEvent(TypedDict):
    type: Literal["scalars"]
    step: int  # the step of loss[0]
    loss: list[float]  # one minibatch loss a step: steps step .. step + len(loss) - 1
    lr: float
    steps_per_s: float  # 0 until measured after a warm-up
    ud_names: list[str]  # the weights update:data is measured for...
    ud_steps: list[int]  # ...the steps it was measured at...
    ud: list[list[float | None]]  # ...and log10(std(lr*grad)/std(w)), a row a step (None: the gradient was all 0)


class MetricsEvent(TypedDict):
    type: Literal["metrics"]
    step: int
    values: dict[str, float]


class EvalEvent(TypedDict):
    type: Literal["eval"]
    step: int
    split: Literal["train", "dev", "test"]
    loss: float
    final: NotRequired[bool]


# ---- statistics at one step -----------------------------------------------------------------------
class ActivationStats(TypedDict):
    name: str
    kind: str
    units: int  # features (2-D outputs, 3-D: the last dim) or channels (4-D and up: dim 1)
    mean: float
    std: float
    saturation: float  # % of outputs in the flat part of the function (tanh |t| > 0.97, sigmoid < 0.03 or > 0.97, ReLU family <= 0)
    dead: int  # units saturated for every example of the batch: they pass no gradient
    hist: list[int]  # HIST_BINS counts over `range`
    range: list[float]  # [lo, hi]
    grad_mean: float | None  # the loss's gradient w.r.t. the output (None: not measured)
    grad_std: float | None
    grad_hist: list[int]
    grad_range: list[float]
    image: NotRequired[list[str]]  # tanh layers of 2-D outputs: the lecture's |t| > 0.99 image, a hex row an example


class WeightStats(TypedDict):
    name: str
    kind: str
    shape: list[int]
    data_std: float
    grad_mean: float
    grad_std: float
    grad_to_data: float  # std(grad) / std(weight)
    grad_hist: list[int]
    grad_range: list[float]


class NormStats(TypedDict):
    name: str
    kind: str
    # BatchNorm: running statistics (the vectors and their means across channels)
    running_mean: NotRequired[list[float]]
    running_var: NotRequired[list[float]]
    mean_of_running_mean: NotRequired[float]
    mean_of_running_var: NotRequired[float]
    # affine parameters (the lecture's bngain / bnbias: torch's `weight` / `bias`)
    gain_mean: NotRequired[float]
    gain_std: NotRequired[float]
    bias_mean: NotRequired[float]
    bias_std: NotRequired[float]


class StatsEvent(TypedDict):
    type: Literal["stats"]
    step: int
    activations: list[ActivationStats]
    weights: list[WeightStats]
    norms: list[NormStats]


class CheckpointEvent(TypedDict):
    type: Literal["checkpoint"]
    step: int
    state: bytes


class WeightsEvent(TypedDict):
    type: Literal["weights"]
    step: int
    state: bytes


Event = (
    ModelEvent | StatusEvent | ControlEvent | ScalarsEvent | MetricsEvent | EvalEvent | StatsEvent
    | CheckpointEvent | WeightsEvent
)  # fmt: skip


# ---- derived: time series -------------------------------------------------------------------------
# per activation layer, per weight and per norm layer: (series prefix, the stats key it reads)
ACTIVATION_SERIES = (("saturation", "saturation"), ("dead", "dead"), ("act_mean", "mean"), ("act_std", "std"),
                     ("grad_std", "grad_std"))  # fmt: skip
WEIGHT_SERIES = (("grad_to_data", "grad_to_data"),)
NORM_SERIES = (("running_mean", "mean_of_running_mean"), ("running_var", "mean_of_running_var"),
               ("norm_gain", "gain_mean"))  # fmt: skip

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
        points += [("loss" if name == "loss" else f"metric/{name}", step, value) for name, value in event["values"].items()]
    elif kind == "stats":
        for entries, table in ((event["activations"], ACTIVATION_SERIES), (event["weights"], WEIGHT_SERIES),
                               (event["norms"], NORM_SERIES)):  # fmt: skip
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
        return asdict(self)


def wire(event: dict, points: list[Point], state: RunState | None) -> dict:
    """An event as the stream sends it: the event itself, plus `points` (its series points grouped by
    series: {name: [[steps], [values]]}) and, when it changed the run's state, `run` (RunState)."""
    grouped: dict[str, list[list]] = {}
    for name, step, value in points:
        steps, values = grouped.setdefault(name, [[], []])
        steps.append(step)
        values.append(value)
    out = {**event, "points": grouped}
    if state is not None:
        out["run"] = state.as_dict()
    return out
