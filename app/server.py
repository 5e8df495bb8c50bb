"""The FastAPI app and `bnscope serve`."""

import ipaddress
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from bnscope import PACKAGE_DIR, __version__
from bnscope.api.routes import events, pages, runs
from bnscope.api.errors import TooManyRequests, add_error_handlers, too_many_requests
from bnscope.api.http import LOG_CONFIG, head_timeout_protocol
from bnscope.api.security import Guard, LoginAttempts
from bnscope.config import Settings
from bnscope.data import read_names
from bnscope.runs import Conflict, NotFound, RunService, TooManyRuns
from bnscope.store import Store, StoreError


MIN_TOKEN_LENGTH = 16
RUN_SLOT_RETRY_S = 30  # a full run queue frees up when a run finishes, pauses or stops


def create_app(settings: Settings | None = None) -> Guard:
    """The FastAPI app inside its Guard (`.app` is the FastAPI app)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = Store(settings.data_dir / "bnscope.sqlite3", max_mb=settings.max_db_mb)
        service = RunService(store, read_names(settings.names), settings)
        app.state.service = service
        if settings.autostart:
            service.create({})
        yield
        service.shutdown()

    app = FastAPI(
        title="bnscope",
        summary="Train the makemore BatchNorm MLP and watch its activations, gradients and BatchNorm statistics live.",
        version=__version__,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.login_attempts = LoginAttempts()
    app.include_router(pages.health)
    app.include_router(runs.router)
    app.include_router(events.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=PACKAGE_DIR / "static"), name="static")

    def error(status: int):
        async def handler(request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(exc)}, status_code=status)

        return handler

    app.add_exception_handler(NotFound, error(404))
    app.add_exception_handler(Conflict, error(409))

    async def run_slots_full(request: Request, exc: TooManyRuns) -> JSONResponse:
        # until RunService raises TooManyRequests itself (then this handler goes)
        return await too_many_requests(request, TooManyRequests(str(exc), RUN_SLOT_RETRY_S))

    app.add_exception_handler(TooManyRuns, run_slots_full)

    async def invalid_config(request: Request, exc: ValidationError) -> JSONResponse:
        # a combination of settings RunConfig refuses (e.g. batch_size 1 with batchnorm on)
        detail = [{"loc": ["body", "config", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    app.add_exception_handler(ValidationError, invalid_config)
    add_error_handlers(app)
    # outermost, around Starlette's ServerErrorMiddleware too, so its 500s get the security headers
    return Guard(app, settings)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(host: str | None, port: int | None, data_dir: Path | None, token: str | None, names: Path | None,
          allowed_hosts: str | None = None) -> int:  # fmt: skip
    import uvicorn

    given = dict(host=host, port=port, data_dir=data_dir, token=token, names=names, allowed_hosts=allowed_hosts)
    settings = Settings(**{k: v for k, v in given.items() if v})
    if settings.token is not None and len(settings.token) < MIN_TOKEN_LENGTH:
        hint = 'python -c "import secrets; print(secrets.token_urlsafe(24))"'
        print(f"bnscope: the access token has {len(settings.token)} characters; it needs at least {MIN_TOKEN_LENGTH} "
              f"(make one with: {hint})", file=sys.stderr)  # fmt: skip
        return 2
    if not is_loopback(settings.host) and not settings.token:
        print(f"bnscope: refusing to serve on {settings.host} without an access token: "
              "pass --token or set BNSCOPE_TOKEN (or bind 127.0.0.1)", file=sys.stderr)  # fmt: skip
        return 2
    read_names(settings.names)  # a bad names file or database is reported before the server starts
    try:
        Store(settings.data_dir / "bnscope.sqlite3", max_mb=settings.max_db_mb)
    except StoreError as err:
        print(f"bnscope: {err}", file=sys.stderr)
        return 2
    app = create_app(settings)  # a bad --allowed-hosts entry is reported here
    torch.set_num_threads(1)  # many small ops: one thread per run is fastest, and leaves a core for the API
    print(f"bnscope: dashboard on http://{settings.host}:{settings.port}  (runs kept in {settings.data_dir})")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning",
                http=head_timeout_protocol(settings.header_timeout_s), log_config=LOG_CONFIG)  # fmt: skip
    return 0
