"""The rules the page follows, taken from where the server keeps them, so the page restates none: the
run statuses and which action each accepts (bnscope.events), every RunConfig field's bounds (bnscope.config),
and the limits of the requests the page makes. `GET /api/meta` answers it, and the page's template has
it inline (static/meta.js reads it there, with no request) and writes the bounds into its inputs."""

from functools import cache

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, Field

from bnscope.api.schemas import RunPatch
from bnscope.config import RunConfig
from bnscope.events import (
    ACTIONS,
    ACTIVATION_SERIES,
    ACTIVE,
    BROKEN,
    ENDED,
    EXPLAINED,
    INTERNAL,
    NORM_SERIES,
    PRODUCING,
    WEIGHT_SERIES,
    Event,
    Status,
)
from bnscope.storage.queries import HISTOGRAM_KINDS, MAX_POINTS
from bnscope.train.data import PREFIX_MAX_LENGTH, PREFIX_PATTERN


class Bounds(BaseModel):
    """A number's range as JSON Schema writes it: inclusive ge / le, exclusive gt / lt (None: no bound)."""

    ge: int | float | None = None
    gt: int | float | None = None
    le: int | float | None = None
    lt: int | float | None = None


class HistogramSource(BaseModel):
    group: str = Field(description="the stats event's list of layers: activations or weights")
    hist: str = Field(description="each entry's key of the counts")
    range: str = Field(description="each entry's key of the counts' [lo, hi]")


class Meta(BaseModel):
    statuses: list[Status] = Field(description="every status a run can have")
    active: list[Status] = Field(description="a worker holds the run")
    producing: list[Status] = Field(description="more events may come: the page keeps its stream open")
    ended: list[Status] = Field(description="nothing more will happen")
    broken: list[Status] = Field(description="ended by what went wrong, at the run's step")
    explained: list[Status] = Field(description="the run's message says why it is so")
    actions: dict[str, list[Status]] = Field(
        description="each action (pause, resume, stop, lr) and the statuses it fits"
    )
    config: dict[str, Bounds] = Field(description="every numeric RunConfig field's range")
    name_max_length: int = Field(description="the longest run name")
    prefix_max_length: int = Field(description="the longest prefix samples may be asked to start with")
    prefix_pattern: str = Field(description="the letters a prefix may have, as a regular expression")
    event_types: list[str] = Field(description="the event types a run's stream sends (bnscope.events)")
    history_max_points: int = Field(description="the most points a series of /history may be asked for")
    series: dict[str, list[str]] = Field(
        description="each layer group's series prefixes: a series a layer, <prefix>/<layer>"
    )
    histogram_kinds: dict[str, HistogramSource] = Field(
        description="each histogram kind, and where a stats event has it"
    )


def bounds(metadata: list) -> Bounds:
    """A field's range from its pydantic metadata (Field(ge=..., le=...) becomes annotated_types' Ge, Le)."""
    keys = {Ge: "ge", Gt: "gt", Le: "le", Lt: "lt"}
    return Bounds(**{keys[type(m)]: getattr(m, keys[type(m)]) for m in metadata if type(m) in keys})


@cache
def page_meta() -> Meta:
    numeric = {name: f for name, f in RunConfig.model_fields.items() if f.annotation in (int, float)}
    types = [event.__annotations__["type"].__args__[0] for event in Event.__args__]
    name_length = next(m.max_length for m in RunPatch.model_fields["name"].metadata if hasattr(m, "max_length"))
    return Meta(
        statuses=list(Status.__args__),
        active=list(ACTIVE),
        producing=list(PRODUCING),
        ended=list(ENDED),
        broken=list(BROKEN),
        explained=list(EXPLAINED),
        actions={action: list(fits) for action, fits in ACTIONS.items()},
        config={name: bounds(f.metadata) for name, f in numeric.items()},
        name_max_length=name_length,
        prefix_max_length=PREFIX_MAX_LENGTH,
        prefix_pattern=PREFIX_PATTERN,
        event_types=[t for t in types if t not in INTERNAL],
        history_max_points=MAX_POINTS,
        series={
            "activations": [prefix for prefix, _ in ACTIVATION_SERIES],
            "weights": [prefix for prefix, _ in WEIGHT_SERIES] + ["update_to_data"],  # from scalars events
            "norms": [prefix for prefix, _ in NORM_SERIES],
        },
        histogram_kinds={
            kind: HistogramSource(group=group, hist=hist, range=span)
            for kind, (group, hist, span) in HISTOGRAM_KINDS.items()
        },
    )
