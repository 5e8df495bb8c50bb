from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator

from bnscope.api.deps import Service
from bnscope.api.schemas import RunCreate, RunOut, RunPatch, SamplesOut
from bnscope.runs import HISTORY_HISTOGRAMS, HISTORY_POINTS
from bnscope.sampling import check_prefix

router = APIRouter(prefix="/api/runs", tags=["runs"])

ERRORS = {404: {"description": "no such run"}, 409: {"description": "the action does not fit the run's state"}}


@router.get("", response_model=list[RunOut])
def list_runs(service: Service):
    return [service.describe(run) for run in service.list()]


@router.post("", response_model=RunOut, status_code=status.HTTP_201_CREATED,
             responses={404: ERRORS[404], 429: {"description": "too many runs training"}})  # fmt: skip
def create_run(body: RunCreate, service: Service):
    """Start a run: the defaults plus `config`, or paired with another run: its config, seed and
    batch order plus `config`, trained from step 0 beside it."""
    overrides = body.config.model_dump(exclude_none=True)
    return service.describe(service.create(overrides, paired_with=body.paired_with, name=body.name))


@router.get("/{run_id}", response_model=RunOut, responses={404: ERRORS[404]})
def get_run(run_id: int, service: Service):
    return service.describe(service.get(run_id))


@router.delete("/{run_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: ERRORS[404]})
def delete_run(run_id: int, service: Service):
    """Stop the run if it trains, and delete it with all it recorded and its checkpoints."""
    service.delete(run_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{run_id}/pause", response_model=RunOut, responses=ERRORS)
def pause_run(run_id: int, service: Service):
    return service.describe(service.pause(run_id))


@router.post("/{run_id}/resume", response_model=RunOut, responses={**ERRORS, 429: {"description": "too many runs"}})
def resume_run(run_id: int, service: Service):
    """Continue a paused run, or an interrupted one (server restarted) from its last checkpoint."""
    return service.describe(service.resume(run_id))


@router.post("/{run_id}/stop", response_model=RunOut, responses=ERRORS)
def stop_run(run_id: int, service: Service):
    return service.describe(service.stop(run_id))


@router.patch("/{run_id}", response_model=RunOut, responses=ERRORS)
def patch_run(run_id: int, body: RunPatch, service: Service):
    """Change the learning rate while the run trains (marked on its timeline)."""
    return service.describe(service.set_lr(run_id, body.lr))


@router.get("/{run_id}/history", responses={404: ERRORS[404]})
def run_history(
    run_id: int,
    service: Service,
    max_points: Annotated[int, Query(ge=2, le=10_000, description="points per series at most")] = HISTORY_POINTS,
    max_histograms: Annotated[int, Query(ge=1, le=HISTORY_HISTOGRAMS, description="statistics steps listed at most")] = HISTORY_HISTOGRAMS,
) -> dict:
    """Everything recorded so far: every series decimated evenly (first and last point kept),
    the steps that have statistics, the latest statistics, and the timeline of status/control/eval
    events. `last_event_id`: pass it to /events as `after` to continue live without a gap."""
    return JSONResponse(service.history(run_id, max_points, max_histograms))  # plain JSON: 100k+ numbers


@router.get("/{run_id}/stats", responses={404: ERRORS[404]})
def run_stats(run_id: int, service: Service, step: Annotated[int, Query(ge=0, le=2**62)]) -> dict:
    """The statistics (histograms, running stats, saturation image) at `step`, or the nearest recorded step before it."""
    return JSONResponse(service.stats_at(run_id, step))


@router.get("/{run_id}/samples", response_model=SamplesOut, responses=ERRORS)
def run_samples(
    run_id: int,
    service: Service,
    n: Annotated[int, Query(ge=1, le=1000, description="how many names")] = 10,
    temperature: Annotated[float, Query(gt=0, le=10, description="<1 safer, >1 wilder")] = 1.0,
    seed: Annotated[int | None, Query(ge=0, le=2**62, description="same seed and weights, same names")] = None,
    prefix: Annotated[
        str, Query(max_length=20, description="every name starts with these letters (a-z)"), AfterValidator(check_prefix)
    ] = "",
    max_len: Annotated[int, Query(ge=1, le=50, description="longest name, prefix included")] = 30,
):
    """Names from the run's current weights (live while it trains), each marked novel or seen in training."""
    if len(prefix) >= max_len:
        raise RequestValidationError(
            [{"loc": ("query", "max_len"), "msg": f"max_len must be longer than the prefix ({len(prefix)})",
              "type": "value_error", "input": max_len}]
        )  # fmt: skip
    return service.samples(run_id, n=n, temperature=temperature, seed=seed, prefix=prefix, max_len=max_len)
