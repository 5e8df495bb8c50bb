"""Error responses that always serialise and always tell the client what it can do next:
- TooManyRequests(message, retry_after_s): a 429 with Retry-After, for any part of the app to raise;
  ServerBusy, the same as a 503, when the whole server (not this client) is at a limit;
- a 422 whose offending input (NaN, Infinity, a lone surrogate...) is shown by its repr, never a 500;
- a 405 whose Allow header lists every method the path takes, not only those of the first route;
- the run service's refusals: NotFound 404, Conflict 409, QueueFull 429, StorageFull 507, and a
  config RunConfig refuses or an Invalid field a 422 naming the field, as FastAPI's own 422s do;
- an unexpected error: a JSON 500 with a short id, and that id with the traceback in the log.
"""

import json
import logging
import math
import secrets

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.routing import Match, Mount

from bnscope.runs.errors import Conflict, Invalid, NotFound, QueueFull, StorageFull

log = logging.getLogger("bnscope")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class TooManyRequests(Exception):
    """Refuse for now: answered 429 with `Retry-After: retry_after_s` (rounded up)."""

    status = 429

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ServerBusy(TooManyRequests):
    """Refuse for now, the server being full: answered 503 with Retry-After."""

    status = 503


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def refusal(exc: Exception) -> JSONResponse:
    """The answer to a TooManyRequests, or to any exception with `retry_after_s` (a 429)."""
    return JSONResponse({"detail": str(exc)}, getattr(exc, "status", 429), headers=retry_after(exc.retry_after_s))


async def too_many_requests(request: Request, exc: TooManyRequests) -> JSONResponse:
    return refusal(exc)


def _json_safe(value: object) -> object:
    # JSONResponse refuses NaN/Infinity and cannot encode lone surrogates: show those by their repr
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode()
        return value
    except (TypeError, ValueError):
        return repr(value)


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    # ctx is left out: it can hold exception objects, and msg already says what it says
    detail = [
        {"type": e.get("type"), "loc": list(e.get("loc", ())), "msg": e.get("msg"), "input": _json_safe(e.get("input"))}
        for e in exc.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def _route_takes(app: FastAPI, path: str, method: str) -> bool:
    # a mount (the static files) matches any method and its app gives its own Allow
    probe = {"type": "http", "path": path, "root_path": "", "method": method, "headers": []}
    return any(not isinstance(route, Mount) and route.matches(probe)[0] is Match.FULL for route in app.router.routes)


async def method_not_allowed(request: Request, exc: HTTPException) -> JSONResponse:
    # Starlette's Allow names the methods of the first route on the path, but a path can have a route per method
    allowed = {method.strip() for method in (exc.headers or {}).get("Allow", "").split(",") if method.strip()}
    allowed |= {method for method in METHODS - allowed if _route_takes(request.app, request.scope["path"], method)}
    return JSONResponse({"detail": "Method Not Allowed"}, 405, headers={"Allow": ", ".join(sorted(allowed))})


def log_internal_error(exc: BaseException, method: str, path: str) -> str:
    """Log the traceback under a new short id, returned for the response."""
    error_id = secrets.token_hex(4)
    log.error("internal error %s on %s %s", error_id, method, path, exc_info=exc)
    return error_id


def internal_error_response(error_id: str) -> JSONResponse:
    return JSONResponse({"detail": "internal error", "error_id": error_id}, status_code=500)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    return internal_error_response(log_internal_error(exc, request.method, request.url.path))


def answered(status: int):
    """A handler answering the exception's message with `status`."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status)

    return handler


async def invalid_config(request: Request, exc: ValidationError) -> JSONResponse:
    # a combination of settings RunConfig refuses (e.g. batch_size 1 with batchnorm on)
    detail = [{"loc": ["body", "config", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse({"detail": detail}, status_code=422)


async def invalid_field(request: Request, exc: Invalid) -> JSONResponse:
    detail = [{"loc": ["body", *exc.field.split(".")], "msg": exc.message, "type": "value_error"}]
    return JSONResponse({"detail": detail}, status_code=422)


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(NotFound, answered(404))
    app.add_exception_handler(Conflict, answered(409))
    app.add_exception_handler(QueueFull, too_many_requests)  # 429 with Retry-After
    app.add_exception_handler(StorageFull, answered(507))
    app.add_exception_handler(ValidationError, invalid_config)
    app.add_exception_handler(Invalid, invalid_field)
    app.add_exception_handler(TooManyRequests, too_many_requests)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(405, method_not_allowed)
    app.add_exception_handler(Exception, internal_error)  # Starlette answers it from ServerErrorMiddleware
