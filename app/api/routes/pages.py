"""The dashboard page (with the rules it follows, bnscope.api.meta, inline), its Plotly.js (from the
plotly package: no CDN, works offline), and the login page used when an access token is set: a right
token gets a signed session cookie; an address with too many wrong ones in a minute waits (429)."""

from pathlib import Path
from urllib.parse import parse_qs

import plotly
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from bnscope import PACKAGE_DIR
from bnscope.api.meta import Meta, page_meta
from bnscope.api.schemas import Health
from bnscope.api.deps import Service
from bnscope.api.errors import retry_after
from bnscope.api.security import SESSION_COOKIE, SESSION_S, new_session, token_matches

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=PACKAGE_DIR / "templates")  # autoescapes every value
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request):
    return templates.TemplateResponse(request, "index.html", {"meta": page_meta().model_dump()})


@router.get("/vendor/plotly.min.js")
def plotly_js():
    return FileResponse(PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request):
    return templates.TemplateResponse(request, "login.html", {"error": None})


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request):
    token = request.app.state.settings.token
    if token is None:
        return RedirectResponse("/", status_code=303)
    attempts, address = request.app.state.login_attempts, request.client.host if request.client else ""
    wait_s = attempts.retry_after_s(address)
    if wait_s:
        headers = retry_after(wait_s)
        error = f"Too many wrong tokens from your address: try again in {headers['Retry-After']} s."
        return templates.TemplateResponse(request, "login.html", {"error": error}, status_code=429, headers=headers)
    given = parse_qs((await request.body()).decode("utf-8", "replace")).get("token", [None])[0]
    if not token_matches(given, token):
        attempts.failed(address)
        return templates.TemplateResponse(request, "login.html", {"error": "That token is not right."}, status_code=401)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        new_session(token),
        max_age=SESSION_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


meta = APIRouter(tags=["page"])


@meta.get("/api/meta", response_model=Meta)
def page_rules():
    """The statuses, the actions each fits, RunConfig's bounds and the limits the page follows (it has them
    inline in its HTML too): the page restates none of them."""
    return page_meta()


health = APIRouter(tags=["health"])


@health.get("/healthz", response_model=Health)
def healthz(service: Service):
    runs = service.all()
    return {
        "status": "ok",
        "runs": len(runs),
        "training": sum(run.worker is not None for run in runs),
        "queued": len(service.queue),
        "streams": sum(run.channel.subscribers for run in runs),
    }
