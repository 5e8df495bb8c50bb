"""Request and response bodies. Config overrides reuse RunConfig's own fields and ranges, so the
OpenAPI schema and the errors are the same as everywhere else; statistics and events are the types
of bnscope.events."""

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from bnscope.config import JSON_INT, RunConfig, not_a_bool
from bnscope.runs.stacking import MAX_MEMBERS
from bnscope.events import Reported, StatsEvent, Status
from bnscope.storage.queries import HistogramKind

MAX_VALUES = 16  # values of one varied setting at most
MAX_VARIED = 3  # settings a sweep varies at most: their grid is its members (bnscope.runs.stacking.MAX_MEMBERS at most)


def _optional(field: FieldInfo) -> tuple[Any, FieldInfo]:
    return field.annotation | None, FieldInfo.merge_field_infos(field, default=None)


ConfigOverrides = create_model(
    "ConfigOverrides",
    __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
    __validators__={"not_a_bool": field_validator("*", mode="before")(not_a_bool)},
    **{name: _optional(field) for name, field in RunConfig.model_fields.items()},
)
ConfigOverrides.__doc__ = (
    "Settings that differ from the defaults (or, for a paired run, from its partner). Settings must also "
    "fit together: batch_size >= 2 with batchnorm on, and at most 5,000,000 parameters (else 422)."
)


# The cross-field rule JSON Schema can state: batch_size >= 2 with BatchNorm on (batchnorm defaults to on).
# For a paired run the partner's settings count too; a conflict with them is a 409.
BATCHNORM_NEEDS_A_BATCH = {
    "if": {"properties": {"paired_with": {"type": "null"}}},
    "then": {
        "properties": {
            "config": {
                "anyOf": [
                    {"properties": {"batchnorm": {"const": False}}, "required": ["batchnorm"]},
                    {"properties": {"batch_size": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 2}]}}},
                ]
            }
        }
    },
}


class RunCreate(BaseModel):
    """A run of the defaults plus `config`, or of a partner's config plus `config`. Settings must fit
    together: batch_size >= 2 with BatchNorm on, and at most 5,000,000 parameters (n_hidden and n_layers
    above all): a request that breaks either is a 422 (a 409 when it is the partner's settings it breaks)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=BATCHNORM_NEEDS_A_BATCH)
    config: ConfigOverrides = Field(default_factory=ConfigOverrides)  # type: ignore[valid-type]
    paired_with: int | None = Field(
        None, ge=1, le=JSON_INT, description="start from this run's config, seed and batch order"
    )
    name: str | None = Field(None, min_length=1, max_length=100)


def _values_of(field: FieldInfo) -> tuple[Any, FieldInfo]:
    """A sweep's values of one setting: 2 to MAX_VALUES of them, each within the setting's own range."""
    item = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
    return list[item], FieldInfo(
        default=None, min_length=2, max_length=MAX_VALUES, json_schema_extra={"uniqueItems": True}
    )


Vary = create_model(
    "Vary",
    __config__=ConfigDict(
        extra="forbid", allow_inf_nan=False, json_schema_extra={"minProperties": 1, "maxProperties": MAX_VARIED}
    ),
    **{name: _values_of(field) for name, field in RunConfig.model_fields.items()},
)
Vary.__doc__ = (
    f"1 to {MAX_VARIED} settings, each with 2 to {MAX_VALUES} different values; the members are every "
    f'combination (at most {MAX_MEMBERS}), e.g. {{"gain": [0.5, 1, 3], "batchnorm": [true, false]}}.'
)
_BN_ON_NEEDS_A_BATCH = {"properties": {"batch_size": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 2}]}}}
SWEEP_RULES = {
    "allOf": [
        {  # varying the batch size: every value >= 2, unless BatchNorm is off for all
            "if": {"properties": {"vary": {"required": ["batch_size"]}}},
            "then": {
                "anyOf": [
                    {
                        "properties": {
                            "config": {"properties": {"batchnorm": {"const": False}}, "required": ["batchnorm"]}
                        },
                        "required": ["config"],
                    },
                    {"properties": {"vary": {"properties": {"batch_size": {"items": {"minimum": 2}}}}}},
                ]
            },
        },
        {  # anything else: the shared config itself (BatchNorm is on in one member at least, if varied)
            "if": {"properties": {"vary": {"not": {"required": ["batch_size"]}}}},
            "then": {
                "anyOf": [
                    {
                        "properties": {
                            "config": {"properties": {"batchnorm": {"const": False}}, "required": ["batchnorm"]},
                            "vary": {"not": {"required": ["batchnorm"]}},
                        },
                        "required": ["config"],
                    },
                    {"properties": {"config": _BN_ON_NEEDS_A_BATCH}},
                ]
            },
        },
    ]
}


class SweepCreate(BaseModel):
    """Paired runs over one setting's values. Each member must fit together as a run's settings do:
    batch_size >= 2 with BatchNorm on (stated in this schema), and at most 5,000,000 parameters (a 422
    naming the value that makes a member too large)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=SWEEP_RULES)
    config: ConfigOverrides = Field(default_factory=ConfigOverrides, description="the settings every member shares")  # type: ignore[valid-type]
    _order: list[str] = PrivateAttr(default_factory=list)
    vary: Vary = Field(examples=[{"gain": [0.5, 1, 1.667, 3, 5]}, {"batchnorm": [True, False]}])  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _a_grid(self) -> "SweepCreate":
        given = self.vary.model_fields_set
        if not 1 <= len(given) <= MAX_VARIED:
            raise ValueError(f"vary: give 1 to {MAX_VARIED} settings")
        members = 1
        for setting in given:
            values = getattr(self.vary, setting)
            if len({(type(v) is bool, v) for v in values}) != len(values):  # JSON's equality: 1 == 1.0, true != 1
                raise ValueError(f"vary.{setting}: the values repeat")
            members *= len(values)
        if members > MAX_MEMBERS:
            raise ValueError(f"vary: the grid makes {members} members; a sweep has at most {MAX_MEMBERS}")
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _keep_order(cls, data: Any, handler) -> "SweepCreate":
        body = handler(data)
        if isinstance(data, dict) and isinstance(data.get("vary"), dict):
            body._order = list(data["vary"])  # a model's fields come in its own order; the grid's in the request's
        return body

    def varied(self) -> dict[str, list]:
        """The grid, {setting: values}, in the order the request gave them."""
        order = self._order or sorted(self.vary.model_fields_set)
        return {setting: getattr(self.vary, setting) for setting in order}


class SweepOut(BaseModel):
    id: int
    runs: list[int]


class SweepInfo(SweepOut):
    vary: dict[str, list[Any]] = Field(description="the grid: each varied setting's values, in order")
    setting: str = Field(description="the first varied setting (vary's first key)")
    values: list[Any] = Field(description="its values")
    config: dict[str, Any]
    created_at: float


class RunPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={"minProperties": 1})
    lr: float = Field(None, gt=0, le=100, description="the new base learning rate, from the next step on")  # type: ignore[assignment]
    name: str = Field(None, min_length=1, max_length=100, description="a new name")  # type: ignore[assignment]

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
        default_factory=dict,
        max_length=32,
        description="what the watcher says of the model (class, parameters, cadence)",
    )


class IngestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[Annotated[Reported, Field(discriminator="type")]] = Field(
        max_length=1000, description="the watched run's events, in order (bnscope.events)"
    )


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
    worker: WorkerInfo | None = Field(
        description="where the run trains, or trained last (None: not since the server started)"
    )
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
    kind: HistogramKind
    steps: list[int]
    layers: dict[str, dict[str, list]]


class Health(BaseModel):
    status: Literal["ok"]
    runs: int
    training: int
    queued: int
    streams: int = Field(description="clients following a run's events now")
