"""Request and response bodies. Config overrides reuse RunConfig's own fields and ranges, so the
OpenAPI schema and the errors are the same as everywhere else; statistics and events are the types
of bnscope.events."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, create_model, model_validator
from pydantic.fields import FieldInfo

from bnscope.config import RunConfig
from bnscope.events import Reported, StatsEvent, Status

MAX_SWEEP = 8  # runs a sweep makes at most (the page overlays up to 8)


def _optional(field: FieldInfo) -> tuple[Any, FieldInfo]:
    return field.annotation | None, FieldInfo.merge_field_infos(field, default=None)


ConfigOverrides = create_model(
    "ConfigOverrides",
    __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
    **{name: _optional(field) for name, field in RunConfig.model_fields.items()},
)
ConfigOverrides.__doc__ = (
    "Settings that differ from the defaults (or, for a paired run, from its partner). Settings must also "
    "fit together: batch_size >= 2 with batchnorm on, and at most 5,000,000 parameters (else 422)."
)


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config: ConfigOverrides = Field(default_factory=ConfigOverrides)  # type: ignore[valid-type]
    paired_with: int | None = Field(None, ge=1, le=2**62, description="start from this run's config, seed and batch order")
    name: str | None = Field(None, min_length=1, max_length=100)


class SweepCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config: ConfigOverrides = Field(default_factory=ConfigOverrides, description="the settings every member shares")  # type: ignore[valid-type]
    vary: dict[str, list[StrictBool | StrictInt | StrictFloat | str]] = Field(
        description=f"exactly one setting and 2 to {MAX_SWEEP} values of it, e.g. {{\"gain\": [0.5, 1, 3]}}",
        examples=[{"gain": [0.5, 1, 1.667, 3, 5]}, {"batchnorm": [True, False]}],
    )

    @model_validator(mode="after")
    def _one_setting(self) -> "SweepCreate":
        if len(self.vary) != 1:
            raise ValueError("vary: give exactly one setting")
        (setting, values), = self.vary.items()
        if not 2 <= len(values) <= MAX_SWEEP:
            raise ValueError(f"vary.{setting}: give 2 to {MAX_SWEEP} values")
        if len({repr(v) for v in values}) != len(values):
            raise ValueError(f"vary.{setting}: the values repeat")
        return self


class SweepOut(BaseModel):
    id: int
    runs: list[int]


class SweepInfo(SweepOut):
    setting: str
    values: list[Any]
    config: dict[str, Any]
    created_at: float


class RunPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    lr: float | None = Field(None, gt=0, le=100, description="the new base learning rate, from the next step on")
    name: str | None = Field(None, min_length=1, max_length=100, description="a new name")

    @model_validator(mode="after")
    def _something(self) -> "RunPatch":
        if self.lr is None and self.name is None:
            raise ValueError("give lr, name or both")
        return self


class WatchedCreate(BaseModel):
    """A run that a user's own process trains and reports with bnscope.watch(model)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    description: dict[str, StrictBool | StrictInt | StrictFloat | str | None] = Field(
        default_factory=dict, max_length=32, description="what the watcher says of the model (class, parameters, cadence)")


class IngestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[Reported] = Field(max_length=1000, description="the watched run's events, in order (bnscope.events)")


class IngestOut(BaseModel):
    accepted: int
    last_event_id: int


class Layers(BaseModel):
    activations: list[str]
    weights: list[str]
    norms: list[str]


class WorkerInfo(BaseModel):
    backend: Literal["thread", "process", "ray"]
    host: str
    pid: int
    node: str | None = None


class RunOut(BaseModel):
    id: int
    name: str
    source: Literal["trainer", "watched"]
    status: Status
    message: str
    step: int
    steps: int | None = Field(description="steps the run trains for (None: a watched run)")
    steps_per_s: float
    eta_s: float | None
    lr: float | None
    config: RunConfig | None = Field(description="a trainer run's settings")
    watched: dict[str, Any] | None = Field(description="a watched run's description (its model, cadence)")
    paired_with: int | None
    sweep_id: int | None
    differs: dict[str, Any] = Field(description="settings that differ from the partner run")
    layers: Layers
    queue_position: int | None = Field(description="1 = next to start, while queued")
    worker: WorkerInfo | None = Field(description="where the run trains, or trained last (None: not since the server started)")
    created_at: float
    last_event_id: int


class Sample(BaseModel):
    name: str
    novel: bool = Field(description="not in the training split")


class SamplesOut(BaseModel):
    run_id: int
    step: int
    samples: list[Sample]


class SeriesOut(BaseModel):
    steps: list[int]
    values: list[float]


class HistoryOut(BaseModel):
    run: RunOut
    last_event_id: int
    start: int = Field(description="the first step covered (aligned down to a bucket)")
    end: int = Field(description="the step after the last one covered")
    bucket: int = Field(description="steps each point averages: the same for every run asked for over the same range")
    series: dict[str, SeriesOut]
    stats_steps: list[int]
    latest_stats: StatsEvent | None
    timeline: list[dict[str, Any]]


class HistogramsOut(BaseModel):
    kind: Literal["activations", "activation_grads", "weight_grads"]
    steps: list[int]
    layers: dict[str, dict[str, list]]


class Health(BaseModel):
    status: Literal["ok"]
    runs: int
    training: int
    queued: int

