"""Access and hardening, as one ASGI layer wrapped around the whole app (outside Starlette's own
error handling, so every response, a 500 included, passes through it). For each request, in order:
  1. the Host must be one of the server's own names (HOST RULE below), so a DNS-rebound name of
     another site is refused (/healthz excepted, for probes that address the server by whatever IP
     reaches it);
  2. a write (any method but GET, HEAD, OPTIONS) must not come from another site: refused when
     Sec-Fetch-Site or Origin says so, or when its body is not JSON (all an HTML form can send;
     the login form excepted);
  3. the access token (when set): `Authorization: Bearer <token>` or the signed session cookie the
     login page sets, on everything but /healthz, /login and static files;
  4. a request body limit (413), counted on the bytes as they arrive, not on a header's word;
  5. security headers on every response; an unexpected error becomes a JSON 500 with an id.
A refused request's body is read and dropped (up to DRAIN_LIMIT) before the answer, so that a
client still sending it reads the answer rather than a connection reset.
Also here: the signed login session, and the limit on failed logins per client address.

HOST RULE, the one place it is stated. The Host's name, lower-cased and with one trailing dot dropped
(`name.` is the same DNS name), must equal, as a whole string (never a suffix, a prefix or a label of
it), one of:
  - localhost, 127.0.0.1 or ::1 (written [::1]), on any port (an SSH tunnel or a container's port
    mapping changes the port, never the name);
  - the address the server is bound to, and the one the connection reached, on any port; neither
    when it binds every interface (0.0.0.0, ::), since any name may resolve to one of those;
  - an --allowed-hosts name, on the port the entry gives if it gives one (a Host without a port
    came to port 80 or 443: behind a proxy the scheme is unknown).
Addresses are compared as written: another spelling of one (127.1, [::ffff:127.0.0.1]) is no name
of the server. Anything else is a 400 naming the Host and the option that would admit it.
"""

import hmac
import re
import secrets
import time
from base64 import urlsafe_b64encode
from collections import deque
from urllib.parse import urlsplit

from starlette.requests import cookie_parser
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bnscope.api.errors import internal_error_response, log_internal_error
from bnscope.config import Settings

SESSION_COOKIE = "bnscope_session"
SESSION_S = 7 * 24 * 3600
LOGIN_ATTEMPTS = 10  # failed logins allowed per address per LOGIN_WINDOW_S
LOGIN_WINDOW_S = 60.0
OPEN_PATHS = ("/healthz", "/login", "/static/", "/vendor/")
TOKEN_PAGES = ("/docs", "/openapi.json", "/redoc")  # answered 401 like the API, not sent to the login page
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SAME_ORIGIN_FETCHES = frozenset({"same-origin", "none"})  # "none": typed in the address bar, a bookmark
JSON = b"application/json"
FORM = b"application/x-www-form-urlencoded"
DEFAULT_PORTS = {"http": 80, "https": 443}
NO_PORT = frozenset(DEFAULT_PORTS.values())  # what a Host without a port came to
DRAIN_LIMIT = 16 << 20  # past what socket buffers hold, so that a client that sends all before reading reads the answer
HOST = re.compile(r"(?P<name>\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::(?P<port>[0-9]{1,5}))?")
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


def split_host(value: str) -> tuple[str, int | None] | None:
    """'Example.com:8000' -> ('example.com', 8000), '[::1]' -> ('::1', None); None if it is no host."""
    value = value.strip().lower()
    if value.count(":") > 1 and not value.startswith("["):
        return value, None  # a bare IPv6 address, as --host takes one
    match = HOST.fullmatch(value)
    if match is None:
        return None
    port = int(match["port"]) if match["port"] else None
    if port is not None and port > 65535:
        return None
    return match["name"].strip("[]").removesuffix("."), port


def same_origin(origin: str, host: str) -> bool:
    """Whether an Origin header names the host and port the request was sent to."""
    parts, target = urlsplit(origin), split_host(host)
    try:
        origin_port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:  # a port out of range
        return False
    if target is None or not parts.hostname:  # "null", from sandboxed frames and some redirects
        return False
    name, port = target
    return parts.hostname == name and origin_port == (port or DEFAULT_PORTS.get(parts.scheme))


def token_matches(given: str | None, token: str) -> bool:
    # compare_digest takes the same time whatever the common prefix, and is False on any length difference
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def sign_session(payload: str, token: str) -> bytes:
    """The signature of a session's `nonce.expiry`: an HMAC, by a key derived from the token so
    that a new token signs out every session made with the old one."""
    key = hmac.digest(token.encode(), b"bnscope login session", "sha256")
    return urlsafe_b64encode(hmac.digest(key, payload.encode(), "sha256")).rstrip(b"=")


def new_session(token: str) -> str:
    """A login session for the cookie, `nonce.expiry.signature`: it proves a login, and holds no token."""
    payload = f"{secrets.token_urlsafe(16)}.{int(time.time()) + SESSION_S}"
    return f"{payload}.{sign_session(payload, token).decode()}"


def session_valid(session: str, token: str) -> bool:
    payload, _, signature = session.rpartition(".")
    expiry = payload.rpartition(".")[2]
    if not (expiry.isascii() and expiry.isdigit()):
        return False
    return hmac.compare_digest(signature.encode(), sign_session(payload, token)) and int(expiry) > time.time()


class LoginAttempts:
    """Failed logins per client address over a sliding window; past the limit, the address waits."""

    MAX_ADDRESSES = 10_000  # beyond it, addresses with no failure in the window are forgotten

    def __init__(self, limit: int = LOGIN_ATTEMPTS, window_s: float = LOGIN_WINDOW_S):
        self.limit, self.window_s = limit, window_s
        self.failures: dict[str, deque[float]] = {}

    def retry_after_s(self, address: str) -> float:
        """Seconds until `address` may try again; 0 when it may now."""
        failures = self.failures.get(address)
        if failures is None or len(failures) < self.limit:
            return 0.0
        return max(0.0, failures[0] + self.window_s - time.monotonic())

    def failed(self, address: str) -> None:
        if len(self.failures) >= self.MAX_ADDRESSES:
            since = time.monotonic() - self.window_s
            self.failures = {a: f for a, f in self.failures.items() if f[-1] > since}
        self.failures.setdefault(address, deque(maxlen=self.limit)).append(time.monotonic())


def _content_length(headers: dict[bytes, bytes]) -> int | None:
    value = headers.get(b"content-length")
    return int(value) if value is not None and value.isdigit() else None


def _has_body(headers: dict[bytes, bytes]) -> bool:
    return b"transfer-encoding" in headers or headers.get(b"content-length", b"0") != b"0"


class _Body:
    """The request body as the guard reads it: once, so that a refusal can drain what is left."""

    def __init__(self, receive: Receive, headers: dict[bytes, bytes]):
        self.receive = receive
        self.left = _has_body(headers)  # some of it is still unread
        self.declared = _content_length(headers)

    async def read(self, limit: int) -> bytes | None:
        """The rest of the body if it is at most `limit` bytes; None if it is longer (no more than
        about `limit` bytes of it read) or the client left."""
        chunks, size = [], 0
        while self.left and size <= limit:
            message = await self.receive()
            if message["type"] != "http.request":
                self.left = False
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            self.left = message.get("more_body", False)
        return b"".join(chunks) if size <= limit else None

    async def drain(self) -> bool:
        """Read and drop the rest, up to DRAIN_LIMIT: whether all of it is read."""
        if self.declared is not None and self.declared > DRAIN_LIMIT:
            return not self.left
        drained = 0
        while self.left and drained <= DRAIN_LIMIT:
            message = await self.receive()
            self.left = message["type"] == "http.request" and message.get("more_body", False)
            drained += len(message.get("body", b""))
        return not self.left


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then passes on to the server's."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


class Guard:
    """The ASGI layer described above, around `app`."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.token = settings.token
        self.max_body_bytes = settings.max_body_bytes
        self.max_ingest_bytes = settings.max_ingest_bytes  # a watched run's batch of statistics is larger
        allowed = {entry: split_host(entry) for entry in settings.allowed_hosts}
        not_names = [entry for entry, parsed in allowed.items() if parsed is None]
        if not_names:
            raise ValueError(f"--allowed-hosts: not a host name: {', '.join(not_names)}")
        self.any_port = set(LOCAL_NAMES)  # names admitted on every port
        self.pinned = set()  # (name, port): --allowed-hosts entries that give a port
        for name, port in allowed.values():
            if port is None:
                self.any_port.add(name)
            else:
                self.pinned.add((name, port))
        self.wildcard = settings.host in WILDCARD_BINDS
        bound = split_host(settings.host)
        if bound is not None and not self.wildcard:
            self.any_port.add(bound[0])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        try:
            await self._guard(scope, receive, send_with_headers)
        except Exception as exc:
            if not started:  # once started, the app's own handler has answered and logged it
                error_id = log_internal_error(exc, scope["method"], scope["path"])
                await internal_error_response(error_id)(scope, receive, send_with_headers)

    async def _guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        body = _Body(receive, headers)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            return await self._refuse(refusal, body, scope, send)
        if not body.left:
            return await self.app(scope, receive, send)
        limit = self._limit(scope["path"])
        content = await body.read(limit)
        if content is None:
            return await self._refuse(self._too_large(limit), body, scope, send)
        await self.app(scope, _replaying(content, receive), send)

    def _refusal(self, scope: Scope, headers: dict[bytes, bytes]) -> Response | None:
        path, method = scope["path"], scope["method"]
        if not (path == "/healthz" and method in ("GET", "HEAD")):
            refusal = self._foreign_host(headers.get(b"host", b"").decode("latin-1"), scope)
            if refusal is not None:
                return refusal
        if method not in SAFE_METHODS:
            refusal = self._cross_site(path, headers)
            if refusal is not None:
                return refusal
        if self.token is not None and not path.startswith(OPEN_PATHS) and not self._authorized(headers):
            if path.startswith("/api") or path in TOKEN_PAGES:
                return JSONResponse({"detail": "an access token is required (Authorization: Bearer ...)"}, 401)
            return RedirectResponse("/login", status_code=303)
        declared = _content_length(headers)
        if declared is not None and declared > self._limit(path):
            return self._too_large(self._limit(path))
        return None

    def names_this_server(self, name: str, port: int | None, scope: Scope) -> bool:
        """The HOST RULE above, for a Host split by split_host."""
        server = scope.get("server")  # (address, port) the connection reached; TestClient's is "testserver"
        if name in self.any_port or (server is not None and not self.wildcard and name == server[0]):
            return True
        return any((name, each) in self.pinned for each in ((port,) if port is not None else NO_PORT))

    def _foreign_host(self, host: str, scope: Scope) -> Response | None:
        target = split_host(host)
        if target is not None and self.names_this_server(*target, scope):
            return None
        name = target[0] if target is not None else host[:100]
        return JSONResponse(
            {
                "detail": f"Host {host[:100]!r} is not a name of this server. If it is yours, start it "
                f"with --allowed-hosts {name} (or BNSCOPE_ALLOWED_HOSTS={name})."
            },
            400,
        )

    @staticmethod
    def _cross_site(path: str, headers: dict[bytes, bytes]) -> Response | None:
        fetch_site, origin = headers.get(b"sec-fetch-site"), headers.get(b"origin")
        host = headers.get(b"host", b"").decode("latin-1")
        if fetch_site is not None and fetch_site.decode("latin-1") not in SAME_ORIGIN_FETCHES:
            return JSONResponse({"detail": "cross-site requests may not change anything here"}, 403)
        if origin is not None and not same_origin(origin.decode("latin-1"), host):
            return JSONResponse({"detail": "requests from another origin may not change anything here"}, 403)
        content_type = headers.get(b"content-type")
        accepted = (JSON, FORM) if path == "/login" else (JSON,)
        if content_type is None and not _has_body(headers):
            return None
        if content_type is None or content_type.split(b";")[0].strip().lower() not in accepted:
            return JSONResponse({"detail": "a request body must be JSON (Content-Type: application/json)"}, 415)
        return None

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        authorization = headers.get(b"authorization")
        if authorization is not None:
            scheme, _, given = authorization.decode("utf-8", "replace").partition(" ")
            return scheme.lower() == "bearer" and token_matches(given.strip(), self.token)
        session = cookie_parser(headers.get(b"cookie", b"").decode("latin-1")).get(SESSION_COOKIE)
        return session is not None and session_valid(session, self.token)

    def _limit(self, path: str) -> int:
        return self.max_ingest_bytes if path.endswith("/ingest") else self.max_body_bytes

    @staticmethod
    def _too_large(limit: int) -> Response:
        return JSONResponse({"detail": f"request body larger than {limit} bytes"}, 413)

    @staticmethod
    async def _refuse(response: Response, body: _Body, scope: Scope, send: Send) -> None:
        # a client still sending its body when the connection closes is reset, and never reads the
        # answer: read the body first, or, past DRAIN_LIMIT, say the connection closes
        if not await body.drain():
            response.headers["connection"] = "close"
        await response(scope, body.receive, send)
