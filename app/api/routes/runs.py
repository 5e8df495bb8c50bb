from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import AfterValidator, Field

from bnscope.api.deps import Service
from bnscope.api.schemas import (
    HistogramsOut,
    HistoryOut,
    IngestBody,
    IngestOut,
    RunCreate,
    RunOut,
    RunPatch,
    SamplesOut,
    SweepCreate,
    SweepInfo,
    SweepOut,
    WatchedCreate,
)
from bnscope.config import JSON_INT, Settings
from bnscope.events import StatsEvent
from bnscope.storage.queries import HEATMAP_STEPS, HISTORY_HISTOGRAMS, HISTORY_POINTS, MAX_POINTS, HistogramKind
from bnscope.train.data import PREFIX_MAX_LENGTH, PREFIX_PATTERN, check_prefix  # not from sampling: that imports torch

router = APIRouter(prefix="/api", tags=["runs"])

NOT_FOUND = {404: {"description": "no such run"}}
CONFLICT = {409: {"description": "the action does not fit the run's state"}}
DEFAULTS = Settings.model_fields
BAD_BODY = {  # the security middleware answers 413 and 415 before a route reads the body (bnscope.api.security)
    400: {"description": "the body could not be read as JSON"},
    413: {
        "description": f"the body is over the server's limit (max_body_bytes, {DEFAULTS['max_body_bytes'].default:,}; "
        f"an ingest batch: max_ingest_bytes, {DEFAULTS['max_ingest_bytes'].default:,} by default)"
    },
    415: {"description": "the body is not JSON (Content-Type: application/json)"},
}
QUEUE_FULL = {429: {"description": "the queue of runs waiting for a slot is full (Retry-After says when to try again)"}}
STEP = Annotated[int, Query(ge=0, le=JSON_INT)]


@router.get("/runs", response_model=list[RunOut])
def list_runs(service: Service):
    return [service.describe(run) for run in service.all()]


@router.post(
    "/runs",
    response_model=RunOut,
    status_code=status.HTTP_201_CREATED,
    responses={**BAD_BODY, **NOT_FOUND, **CONFLICT, **QUEUE_FULL},
)
def create_run(body: RunCreate, service: Service):
    """Queue a run: the defaults plus `config`, or paired with another run: its config, seed and
    batch order plus `config`, trained from step 0. It trains as soon as a slot is free."""
    overrides = body.config.model_dump(exclude_none=True)
    return service.describe(service.create(overrides, paired_with=body.paired_with, name=body.name))


@router.post("/watched", response_model=RunOut, status_code=status.HTTP_201_CREATED, responses=BAD_BODY)
def create_watched(body: WatchedCreate, service: Service):
    """A run that a user's own process trains (`bnscope.watch(model, server=...)`): its events come
    through /runs/{id}/ingest, and it is drawn like any other."""
    return service.describe(service.create_watched(body.name, body.description))


@router.post("/runs/{run_id}/ingest", response_model=IngestOut, responses={**BAD_BODY, **NOT_FOUND, **CONFLICT})
def ingest(run_id: int, body: IngestBody, service: Service):
    """A watched run's events, in order (at most 1,000 a request): streamed and stored as a worker's are."""
    events = [dict(event) for event in body.events]
    run = service.ingest(run_id, events)
    return {"accepted": len(events), "last_event_id": run.channel.last_id}


@router.post(
    "/sweeps", response_model=SweepOut, status_code=status.HTTP_201_CREATED, responses={**BAD_BODY, **QUEUE_FULL}
)
def create_sweep(body: SweepCreate, service: Service):
    """A family of paired runs over a grid of up to three settings (e.g. `{"vary": {"gain": [0.5, 1, 1.667, 3, 5],
    "batchnorm": [true, false]}}`: 10 members): the same config, seed and batch order but those settings.
    Members of the same tensor shapes train as one stack, all starting together and kept in lockstep; a
    grid of more than 256 members is refused (422)."""
    sweep_id, runs = service.create_sweep(body.config.model_dump(exclude_none=True), body.varied())
    return {"id": sweep_id, "runs": [run.id for run in runs]}


@router.post(
    "/sweeps/{sweep_id}/resume", response_model=list[RunOut], responses={**NOT_FOUND, **CONFLICT, **QUEUE_FULL}
)
def resume_sweep(sweep_id: int, service: Service):
    """Queue every interrupted member of the sweep (after a restart, say) to go on together, as stacks,
    each from its last checkpoint exactly."""
    return [service.describe(run) for run in service.resume_sweep(sweep_id)]


@router.get("/sweeps", response_model=list[SweepInfo])
def list_sweeps(service: Service):
    return service.sweeps()


@router.get("/runs/{run_id}", response_model=RunOut, responses=NOT_FOUND)
def get_run(run_id: int, service: Service):
    return service.describe(service.get(run_id))


@router.delete(
    "/runs/{run_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**NOT_FOUND, 507: {"description": "the disk is full: nothing was deleted"}},
)
def delete_run(run_id: int, service: Service):
    """Stop the run if it trains, and delete it with all it recorded and its checkpoints."""
    service.delete(run_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/runs/{run_id}/pause", response_model=RunOut, responses={**NOT_FOUND, **CONFLICT})
def pause_run(run_id: int, service: Service):
    return service.describe(service.pause(run_id))


@router.post("/runs/{run_id}/resume", response_model=RunOut, responses={**NOT_FOUND, **CONFLICT, **QUEUE_FULL})
def resume_run(run_id: int, service: Service):
    """Continue a paused run, or queue an interrupted one (the server or its worker stopped) to go on
    from its last checkpoint, exactly as if it had never stopped."""
    return service.describe(service.resume(run_id))


@router.post("/runs/{run_id}/stop", response_model=RunOut, responses={**NOT_FOUND, **CONFLICT})
def stop_run(run_id: int, service: Service):
    """Stop for good (a stopped run keeps all it recorded, and its weights for samples)."""
    return service.describe(service.stop(run_id))


@router.patch("/runs/{run_id}", response_model=RunOut, responses={**BAD_BODY, **NOT_FOUND, **CONFLICT})
def patch_run(run_id: int, body: RunPatch, service: Service):
    """Rename a run, or change its learning rate while it trains (marked on its timeline)."""
    if body.name is not None:
        service.rename(run_id, body.name)
    if body.lr is not None:
        service.set_lr(run_id, body.lr)
    return service.describe(service.get(run_id))


@router.get("/runs/{run_id}/history", response_model=HistoryOut, responses=NOT_FOUND)
def run_history(
    run_id: int,
    service: Service,
    start: Annotated[int, Query(ge=0, le=JSON_INT, description="first step")] = 0,
    end: Annotated[
        int | None, Query(ge=1, le=JSON_INT, description="the step after the last (default: the run's step)")
    ] = None,
    max_points: Annotated[int, Query(ge=2, le=MAX_POINTS, description="points per series at most")] = HISTORY_POINTS,
    max_histograms: Annotated[
        int, Query(ge=1, le=HISTORY_HISTOGRAMS, description="statistics steps listed at most")
    ] = HISTORY_HISTOGRAMS,
    series: Annotated[
        list[Annotated[str, Field(max_length=200)]] | None,
        Query(max_length=64, description="only these series (repeat the parameter); default: every one"),
    ] = None,
):
    """Every series over [start, end) averaged over buckets of `bucket` steps (a power of two, the
    smallest that keeps each series within max_points): two runs asked for over the same range come back
    at the same steps. Also the statistics steps, the latest statistics and the timeline. It answers
    what the store holds, never waiting for a training run's newest events (about a second behind): `run`
    is the run's state as of them, and `last_event_id`, passed to /events as `after`, continues live from
    there without a gap. An ended run is answered whole. An `end` at or before `start` is an empty range."""
    return JSONResponse(
        service.history(run_id, start, end, max_points, max_histograms, series)
    )  # plain JSON: 100k+ numbers


@router.get("/runs/{run_id}/stats", response_model=StatsEvent, responses=NOT_FOUND)
def run_stats(run_id: int, service: Service, step: STEP):
    """The statistics (histograms, running stats, saturation image) at `step`, or the nearest recorded step before
    it: the newest ones as the stream sent them, before they are stored."""
    return JSONResponse(service.stats_at(run_id, step))


@router.get("/runs/{run_id}/histograms", response_model=HistogramsOut, responses=NOT_FOUND)
def run_histograms(
    run_id: int,
    service: Service,
    kind: HistogramKind = "activations",
    start: STEP = 0,
    end: Annotated[int | None, Query(ge=1, le=JSON_INT)] = None,
    max_steps: Annotated[
        int, Query(ge=1, le=1000, description="statistics steps at most, evenly spaced")
    ] = HEATMAP_STEPS,
):
    """Each layer's histogram over time (a column a statistics step, with its bin range): for a heatmap."""
    return JSONResponse(service.histograms(run_id, kind, start, end, max_steps))


@router.get(
    "/runs/{run_id}/export",
    response_class=StreamingResponse,
    responses={
        **NOT_FOUND,
        200: {"description": "every series, raw", "content": {"text/csv": {}, "application/json": {}}},
    },
)
def export_run(run_id: int, service: Service, format: Literal["csv", "json"] = "csv"):  # noqa: A002 - the query's name
    """Every series of the run at every step it was measured. CSV: a `step` column and one column a
    series; JSON: the run, its timeline and each series' steps and values."""
    out = service.export(run_id, format)
    name = f"bnscope-run-{run_id}.{format}"
    return StreamingResponse(
        iter(lambda: out.read(65536), ""),
        media_type="text/csv" if format == "csv" else "application/json",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


@router.get("/runs/{run_id}/samples", response_model=SamplesOut, responses={**NOT_FOUND, **CONFLICT})
def run_samples(
    run_id: int,
    service: Service,
    n: Annotated[int, Query(ge=1, le=1000, description="how many names")] = 10,
    temperature: Annotated[float, Query(gt=0, le=10, allow_inf_nan=False, description="<1 safer, >1 wilder")] = 1.0,
    seed: Annotated[int | None, Query(ge=0, le=JSON_INT, description="same seed and weights, same names")] = None,
    prefix: Annotated[
        str,
        Query(
            max_length=PREFIX_MAX_LENGTH,
            json_schema_extra={"pattern": PREFIX_PATTERN},
            description="every name starts with these letters (a-z)",
        ),
        AfterValidator(check_prefix),
    ] = "",
    max_len: Annotated[
        int, Query(ge=1, le=50, description="longest name, prefix included (a prefix this long is the whole name)")
    ] = 30,
    one_at_a_time: Annotated[
        bool, Query(description="each name drawn to its end before the next, as the lecture")
    ] = False,
):
    """Names from the run's current weights (live while it trains), each marked novel or seen in training.
    409 for a watched run, a run with no weights yet, or one whose weights are not finite (diverged).

    The lecture notebook's 20 names: train the preset "the lecture's notebook, exactly" (gain 1,
    batch_order=lecture, bn_variance=unbiased, 1,001 steps) on the lecture's names file, then ask for
    `?n=20&seed=2147483657&one_at_a_time=true` (2147483657 = 2147483647 + 10, the notebook's generator)."""
    return service.samples(
        run_id, n=n, temperature=temperature, seed=seed, prefix=prefix, max_len=max_len, one_at_a_time=one_at_a_time
    )
