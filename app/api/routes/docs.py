"""/docs (Swagger UI) and /redoc that work offline: their scripts and styles come from the
fastapi-offline package's copies, served here, never from a CDN. Swagger UI starts from a file
(static/swagger-init.js), as the pages' Content-Security-Policy runs no inline script; ReDoc's
search is off, as it would run in a blob: worker that the policy forbids. ReDoc's sidebar links to
its maker with a logo from a CDN: both are pointed back at this server, so nothing leaves the machine.
The app is made with docs_url=None and redoc_url=None so that these replace FastAPI's own."""

from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response

ASSETS = Path(fastapi_offline.__file__).parent / "static"
MEDIA_TYPES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
PREFIX = "/vendor/docs"
REDOC_OFF_MACHINE = {  # what ReDoc's bundle would fetch or link to, and what it gets instead
    'src:"https://cdn.redoc.ly/redoc/logo-mini.svg"': f'src:"{PREFIX}/favicon.png"',
    'href:"https://redocly.com/redoc/"': 'href:"/redoc"',
}

router = APIRouter(include_in_schema=False)

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>bnscope API</title>
  <link rel="icon" href="{PREFIX}/favicon.png">
  {head}
</head>
<body style="margin: 0">
{body}
</body>
</html>
"""
SWAGGER_PAGE = PAGE.format(
    PREFIX=PREFIX,
    head=f'<link rel="stylesheet" href="{PREFIX}/swagger-ui.css">',
    body=f"""
  <div id="swagger-ui"></div>
  <script src="{PREFIX}/swagger-ui-bundle.js"></script>
  <script src="/static/swagger-init.js"></script>""",
)
REDOC_PAGE = PAGE.format(
    PREFIX=PREFIX,
    head="",
    body=f"""
  <redoc spec-url="/openapi.json" disable-search="true"></redoc>
  <script src="{PREFIX}/redoc.standalone.js"></script>""",
)


@cache
def _redoc_bundle() -> bytes:
    text = (ASSETS / "redoc.standalone.js").read_text(encoding="utf-8")
    for found, replacement in REDOC_OFF_MACHINE.items():
        if text.count(found) != 1:  # another ReDoc version: fail loudly rather than link out
            raise RuntimeError(f"ReDoc bundle: expected {found!r} once")
        text = text.replace(found, replacement)
    return text.encode()


@router.get(PREFIX + "/{name}")
def docs_asset(name: str):
    if name not in MEDIA_TYPES:
        raise HTTPException(404, "no such file")
    headers = {"Cache-Control": "public, max-age=86400"}
    if name == "redoc.standalone.js":
        return Response(_redoc_bundle(), media_type=MEDIA_TYPES[name], headers=headers)
    return FileResponse(ASSETS / name, media_type=MEDIA_TYPES[name], headers=headers)


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui():
    return HTMLResponse(SWAGGER_PAGE)


@router.get("/redoc", response_class=HTMLResponse)
def redoc():
    return HTMLResponse(REDOC_PAGE)
