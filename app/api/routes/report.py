"""Reports to share: a run, a selection of runs or a sweep as one self-contained HTML file (bnscope.report)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from bnscope import report
from bnscope.api.deps import Service
from bnscope.config import JSON_INT
from bnscope.storage.queries import HISTORY_POINTS
from bnscope.runs.errors import Conflict, Invalid, NotFound
from bnscope.runs.service import RunService

router = APIRouter(prefix="/api", tags=["reports"])

HTML = {
    200: {"description": "the report, an HTML file that opens offline", "content": {"text/html": {}}},
    404: {"description": "no such run or sweep"},
}


class View:
    """What the page shows: the step of its histograms and health (default: the newest every run reached), and
    its charts' step range (default: to the furthest run's step)."""

    def __init__(
        self,
        step: Annotated[int | None, Query(ge=0, le=JSON_INT, description="histograms and health here")] = None,
        start: Annotated[int, Query(ge=0, le=JSON_INT, description="first step")] = 0,
        end: Annotated[int | None, Query(ge=1, le=JSON_INT, description="the step after the last")] = None,
        max_points: Annotated[
            int, Query(ge=2, le=HISTORY_POINTS, description="points a series")
        ] = report.REPORT_POINTS,
    ):
        self.step, self.start, self.end, self.max_points = step, start, end, max_points


def _report(service: RunService, run_ids: list[int], view: View, filename: str) -> HTMLResponse:
    service.written(
        *(service.runs[i] for i in run_ids if i in service.runs)
    )  # ended runs whole; training ones as stored

    def samples(row: dict) -> dict | None:
        try:
            answer = service.samples(row["id"], report.SAMPLES, 1.0, report.SAMPLE_SEED, prefix="", max_len=30)
        except Conflict:  # no weights yet, or diverged
            return None
        return {"step": answer["step"], "samples": answer["samples"]}

    try:
        data = report.gather(
            service.store,
            run_ids,
            step=view.step,
            start=view.start,
            end=view.end,
            max_points=view.max_points,
            sampler=samples,
        )
    except report.NoRuns as err:
        raise NotFound(str(err)) from None
    except ValueError as err:
        raise Invalid("runs", str(err)) from None
    # an attachment: saved and opened from disk, where its own inline scripts may run
    return HTMLResponse(report.render(data), headers={"content-disposition": f'attachment; filename="{filename}"'})


@router.get("/runs/{run_id}/report", response_class=HTMLResponse, responses=HTML)
def run_report(run_id: int, service: Service, view: Annotated[View, Depends()]):
    """The run as one HTML file that opens offline: its charts over the step range, histograms and
    health at `step`, settings and samples, with Plotly.js and the data inlined."""
    service.get(run_id)
    return _report(service, [run_id], view, f"bnscope-run-{run_id}.html")


@router.get("/sweeps/{sweep_id}/report", response_class=HTMLResponse, responses=HTML)
def sweep_report(sweep_id: int, service: Service, view: Annotated[View, Depends()]):
    """Every run of the sweep in one HTML file, drawn at the same steps, what differs marked."""
    try:
        run_ids = report.select(service.store, f"sweep:{sweep_id}")
    except report.NoRuns as err:
        raise NotFound(str(err)) from None
    return _report(service, run_ids, view, f"bnscope-sweep-{sweep_id}.html")


@router.get("/report", response_class=HTMLResponse, responses=HTML)
def selection_report(
    service: Service,
    view: Annotated[View, Depends()],
    runs: Annotated[str, Query(pattern=r"^\d{1,15}(,\d{1,15}){0,63}$", description="run ids, e.g. 1,2,5")],
):
    """The runs the page overlays (its address's `runs`) in one HTML file, drawn at the same steps."""
    run_ids = list(dict.fromkeys(int(part) for part in runs.split(",")))
    for run_id in run_ids:
        service.get(run_id)
    return _report(service, run_ids, view, "bnscope-report.html")
