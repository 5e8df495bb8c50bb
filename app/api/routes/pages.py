"""The dashboard page, its Plotly.js (from the plotly package: no CDN, works offline), and the
login page used when an access token is set."""

from pathlib import Path
from urllib.parse import parse_qs

import plotly
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from bnscope import PACKAGE_DIR
from bnscope.api.schemas import Health
from bnscope.api.security import COOKIE, token_matches
from bnscope.api.deps import Service

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=PACKAGE_DIR / "templates")  # autoescapes every value
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request):
    return templates.TemplateResponse(request, "index.html")


@router.get("/vendor/plotly.min.js")
def plotly_js():
    return FileResponse(PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request):
    return templates.TemplateResponse(request, "login.html", {"error": None})


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request):
    token = request.app.state.settings.token
    given = parse_qs((await request.body()).decode("utf-8", "replace")).get("token", [None])[0]
    if token is None or token_matches(given, token):
        response = RedirectResponse("/", status_code=303)
        if token is not None:
            response.set_cookie(COOKIE, given, httponly=True, samesite="strict")
        return response
    return templates.TemplateResponse(request, "login.html", {"error": "That token is not right."}, status_code=401)


health = APIRouter(tags=["health"])


@health.get("/healthz", response_model=Health)
def healthz(service: Service):
    runs = service.all()
    return {"status": "ok", "runs": len(runs), "training": sum(run.worker is not None for run in runs), "queued": len(service.queue)}
