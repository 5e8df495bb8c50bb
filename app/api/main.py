"""The FastAPI app and `bnscope serve`."""

import asyncio
import ipaddress
import socket
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from bnscope import PACKAGE_DIR, __version__
from bnscope.api.deps import query_given_once
from bnscope.api.routes import docs, events, pages, report, runs, sweeps
from bnscope.api.routes import health as health_rules
from bnscope.api.errors import add_error_handlers
from bnscope.api.http import LOG_CONFIG, bounded_protocol
from bnscope.api.limits import Slots
from bnscope.api.security import Guard, LoginAttempts
from bnscope.config import Settings
from bnscope.train.data import NamesFileError, read_names
from bnscope.runs.service import RunService
from bnscope.storage.store import Store, StoreError
from bnscope.runs.workers import Backend, ProcessBackend


def make_backend(settings: Settings) -> Backend:
    """Where runs train: a worker process each (the default), or a Ray actor each (`--ray`)."""
    if settings.ray:
        from bnscope.runs.ray import RayBackend

        return RayBackend(settings.ray)
    return ProcessBackend()


MIN_TOKEN_LENGTH = 16


def lifespan_of(settings: Settings, backend: Backend | None):
    """The app's life: the store, the workers and the run service made at start-up; every stream ended
    and the runs checkpointed at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = Store(settings.data_dir / "bnscope.sqlite3", max_mb=settings.max_db_mb)
        workers = backend or make_backend(settings)
        slots = getattr(workers, "slots", None)  # a Ray cluster's CPUs, unless max_runs was set
        ray_slots = slots and "max_runs" not in settings.model_fields_set
        run_settings = settings.model_copy(update={"max_runs": slots}) if ray_slots else settings
        service = RunService(store, read_names(settings.names), run_settings, workers)
        app.state.service = service
        app.state.stopping = asyncio.Event()  # set when the server begins to stop: every stream ends
        app.state.loop = asyncio.get_running_loop()
        if settings.autostart and not service.runs:  # a fresh store: show something at once
            service.create({})
        yield
        app.state.stopping.set()
        await asyncio.to_thread(service.shutdown)

    return lifespan


def create_app(settings: Settings | None = None, backend: Backend | None = None) -> Guard:
    """The FastAPI app inside its Guard (`.app` is the FastAPI app)."""
    settings = settings or Settings()
    app = FastAPI(
        title="bnscope",
        summary="Train the makemore BatchNorm MLP and watch its activations, gradients and BatchNorm statistics live.",
        version=__version__,
        lifespan=lifespan_of(settings, backend),
        docs_url=None,  # /docs and /redoc come from routes/docs.py: served offline
        redoc_url=None,
        dependencies=[Depends(query_given_once)],
    )
    app.state.settings = settings
    app.state.login_attempts = LoginAttempts()
    app.state.streams = Slots("streams", settings.max_streams, settings.max_streams_per_address)
    for router in (
        pages.health,
        runs.router,
        sweeps.router,
        report.router,
        health_rules.router,
        events.router,
        pages.meta,
        pages.router,
        docs.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=PACKAGE_DIR / "static"), name="static")

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


class Server(uvicorn.Server):
    """uvicorn's server, told when it begins to stop (a signal): the streams end at once and no queued
    run starts, so the rest of the stop (the workers' checkpoints) fits in a few seconds."""

    def __init__(self, config: uvicorn.Config, app: FastAPI):
        super().__init__(config)
        self.app = app

    def handle_exit(self, sig, frame) -> None:
        state = self.app.state
        if getattr(state, "service", None) is not None:
            state.service.closing()
            state.loop.call_soon_threadsafe(state.stopping.set)
        super().handle_exit(sig, frame)


def serve(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    token: str | None,
    names: Path | None,
    allowed_hosts: str | None = None,
    ray: str | None = None,
) -> int:
    given = dict(
        host=host, port=port, data_dir=data_dir, token=token, names=names, allowed_hosts=allowed_hosts, ray=ray
    )
    settings = Settings(**{k: v for k, v in given.items() if v is not None})
    if settings.token is not None and len(settings.token) < MIN_TOKEN_LENGTH:
        hint = 'python -c "import secrets; print(secrets.token_urlsafe(24))"'
        print(
            f"bnscope: the access token has {len(settings.token)} characters; it needs at least {MIN_TOKEN_LENGTH} "
            f"(make one with: {hint})",
            file=sys.stderr,
        )
        return 2
    if not is_loopback(settings.host) and not settings.token:
        print(
            f"bnscope: refusing to serve on {settings.host} without an access token: "
            "pass --token or set BNSCOPE_TOKEN (or bind 127.0.0.1)",
            file=sys.stderr,
        )
        return 2
    try:  # everything that can fail is checked before anything is written
        guard = create_app(settings)  # a bad --allowed-hosts entry is reported here
        read_names(settings.names)
        listener = _listen(settings.host, settings.port)
        Store(settings.data_dir / "bnscope.sqlite3", max_mb=settings.max_db_mb)
    except (NamesFileError, StoreError, ValueError) as err:
        print(f"bnscope: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"bnscope: cannot listen on {settings.host}:{settings.port}: {err.strerror or err}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        guard, log_level="warning", timeout_graceful_shutdown=3, http=bounded_protocol(settings), log_config=LOG_CONFIG
    )
    bound = listener.getsockname()[1]
    print(
        f"bnscope: dashboard on http://{settings.host}:{bound}  (runs kept in {settings.data_dir}; Ctrl-C stops, "
        "training runs resume after a restart)",
        flush=True,
    )
    Server(config, guard.app).run(sockets=[listener])
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound now: a busy port is reported before a run or a database exists."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto named: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and without it a response
    # written in two parts (head, body) waits ~40 ms for the client's delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
