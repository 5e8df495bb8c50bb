"""What a sweep shows at a step (the page's effect chart), and the lecture's experiments to start."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from bnscope.storage import sweep_summary
from bnscope.api.deps import Service
from bnscope.config import JSON_INT
from bnscope.presets import PRESETS

router = APIRouter(prefix="/api", tags=["sweeps"])


class Preset(BaseModel):
    id: str
    kind: Literal["run", "sweep"]
    name: str
    text: str
    body: dict[str, Any]


class Group(BaseModel):
    settings: dict[str, Any]
    runs: list[int]
    mean: dict[str, float | None]
    min: dict[str, float | None]
    max: dict[str, float | None]


class Member(BaseModel):
    run_id: int
    settings: dict[str, Any]
    step: int
    values: dict[str, float | None]


class SweepSummary(BaseModel):
    sweep_id: int
    step: int
    vary: dict[str, list[Any]]
    axis: str
    lines_by: str | None
    measures: list[str]
    members: list[Member]
    groups: list[Group]


@router.get("/presets", response_model=list[Preset])
def presets():
    """The lecture's experiments, each one click on the page: POST its `body` to /api/runs (kind "run") or
    /api/sweeps (kind "sweep"). `text` says what it shows; numbers the lecture printed are labelled with the
    lecture's network they came from."""
    return PRESETS


@router.get(
    "/sweeps/{sweep_id}/summary",
    response_model=SweepSummary,
    responses={404: {"description": "no such sweep"}, 200: {"content": {"application/json": {}, "text/csv": {}}}},
)
def summary(
    sweep_id: int,
    service: Service,
    step: Annotated[
        int | None, Query(ge=0, le=JSON_INT, description="default: the newest step every member has statistics for")
    ] = None,
    format: Literal["json", "csv"] = "json",
):  # noqa: A002 - the query's name
    """Each member's measures at `step` (train loss over the statistics interval ending there, dev loss,
    per-layer saturation, activation and gradient std, dead units, update:data and grad:data), and each
    group's mean, min and max (members that differ only by seed): the values behind the effect chart.
    `axis` is the swept setting the chart puts on x, `lines_by` the one it draws a line for each value of."""
    answer = service.sweep_summary(sweep_id, step)
    if format == "csv":
        return PlainTextResponse(
            sweep_summary.to_csv(answer),
            media_type="text/csv",
            headers={
                "content-disposition": f'attachment; filename="bnscope-sweep-{sweep_id}-step-{answer["step"]}.csv"'
            },
        )
    return answer
