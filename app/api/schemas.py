"""Request and response bodies. Config overrides reuse RunConfig's own fields and ranges, so the
OpenAPI schema and the errors are the same as everywhere else."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from bnscope.config import RunConfig

RunStatus = Literal["created", "running", "paused", "finished", "stopped", "diverged", "failed", "interrupted"]


def _optional(field: FieldInfo) -> tuple[Any, FieldInfo]:
    return field.annotation | None, FieldInfo.merge_field_infos(field, default=None)


ConfigOverrides = create_model(
    "ConfigOverrides",
    __config__=ConfigDict(extra="forbid"),
    **{name: _optional(field) for name, field in RunConfig.model_fields.items()},
)
ConfigOverrides.__doc__ = "Settings that differ from the defaults (or, for a paired run, from its partner)."


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config: ConfigOverrides = Field(default_factory=ConfigOverrides)  # type: ignore[valid-type]
    paired_with: int | None = Field(None, ge=1, le=2**62, description="start from this run's config, seed and batch order")
    name: str | None = Field(None, min_length=1, max_length=100)


class RunPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lr: float = Field(gt=0, le=100, description="the new base learning rate, from the next step on")


class Layers(BaseModel):
    tanh: list[str]
    weights: list[str]
    batchnorm: list[str]


class RunOut(BaseModel):
    id: int
    name: str
    status: RunStatus
    message: str
    step: int
    steps: int
    steps_per_s: float
    eta_s: float | None
    lr: float
    config: RunConfig
    paired_with: int | None
    differs: dict[str, Any] = Field(description="settings that differ from the partner run")
    layers: Layers
    created_at: float
    last_event_id: int


class Sample(BaseModel):
    name: str
    novel: bool = Field(description="not in the training split")


class SamplesOut(BaseModel):
    run_id: int
    step: int
    samples: list[Sample]


class Health(BaseModel):
    status: Literal["ok"]
    runs: int
    training: int
