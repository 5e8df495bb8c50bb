"""Access and hardening, as one ASGI middleware in front of every route:
  - the access token (when set): `Authorization: Bearer <token>` or the cookie the login page
    sets, compared in constant time, on everything but /healthz, /login and static files;
  - a request body limit (413), counted on the bytes as they arrive, not on a header's word;
  - security headers: a Content-Security-Policy that allows only the page's own scripts.
"""

import hmac
from http.cookies import SimpleCookie

from starlette.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "bnscope_token"
OPEN_PATHS = ("/healthz", "/login", "/static/", "/vendor/")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)  # Plotly sets inline style attributes, hence 'unsafe-inline' for styles only
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class BodyTooLarge(Exception):
    pass


def token_matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


class Guard:
    def __init__(self, app: ASGIApp, token: str | None, max_body_bytes: int):
        self.app = app
        self.token = token
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if self.token and not path.startswith(OPEN_PATHS) and not token_matches(self._presented(scope), self.token):
            if path.startswith("/api") or path in ("/docs", "/openapi.json", "/redoc"):
                response = JSONResponse({"detail": "an access token is required (Authorization: Bearer ...)"}, 401)
            else:
                response = RedirectResponse("/login", status_code=303)
            return await response(scope, receive, self._with_headers(send))
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            return await self._too_large(scope, receive, send)
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, counted_receive, self._with_headers(send))
        except BodyTooLarge:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse({"detail": f"request body larger than {self.max_body_bytes} bytes"}, 413)
        await response(scope, receive, self._with_headers(send))

    @staticmethod
    def _presented(scope: Scope) -> str | None:
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        cookie = SimpleCookie(headers.get(b"cookie", b"").decode("latin-1"))
        return cookie[COOKIE].value if COOKIE in cookie else None

    @staticmethod
    def _with_headers(send: Send) -> Send:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + HEADERS
            await send(message)

        return send_with_headers
