"""Access control: the token, the login page and its signed session cookie, and hardening headers."""

import subprocess
import sys
import time

import pytest
from fastapi.testclient import TestClient

from bnscope.config import Settings
from bnscope.api.security import LOGIN_ATTEMPTS, SESSION_COOKIE, sign_session
from bnscope.api.main import create_app

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def guarded(tmp_path):
    """The app with an access token, in-process."""
    with TestClient(create_app(Settings(data_dir=tmp_path, autostart=False, token=TOKEN))) as client:
        yield client


def serve_exit(tmp_path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`bnscope serve` that is expected to refuse to start."""
    return subprocess.run(
        [sys.executable, "-m", "bnscope.cli", "serve", "--data-dir", str(tmp_path), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **(env or {})},
    )


def test_serving_beyond_loopback_without_a_token_is_refused(tmp_path):
    result = serve_exit(tmp_path, "--host", "0.0.0.0")
    assert result.returncode == 2
    assert "token" in result.stderr and "0.0.0.0" in result.stderr


def test_a_short_token_is_refused_at_start_with_a_way_to_make_one(tmp_path):
    result = serve_exit(tmp_path, "--token", "x" * 15)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "16" in result.stderr and "secrets.token_urlsafe" in result.stderr
    # an empty one too (BNSCOPE_TOKEN= from an unset variable): it would let every request in
    assert serve_exit(tmp_path, env={"BNSCOPE_TOKEN": ""}).returncode == 2


def test_with_a_token_every_api_route_and_the_stream_require_it(tmp_path):
    app = create_app(Settings(data_dir=tmp_path, autostart=False, token=TOKEN))
    with TestClient(app) as client:
        for path in ("/api/runs", "/api/runs/1", "/api/runs/1/events", "/api/runs/1/history", "/openapi.json"):
            assert client.get(path).status_code == 401, path
        assert client.post("/api/runs", json={}).status_code == 401
        assert client.get("/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert client.get("/healthz").status_code == 200  # for load balancers and probes
        # the page sends a browser to the login form, which sets an HttpOnly cookie
        assert client.get("/", follow_redirects=False).headers["location"] == "/login"
        assert client.post("/login", data={"token": "wrong"}).status_code == 401
        login = client.post("/login", data={"token": TOKEN}, follow_redirects=False)
        assert login.status_code == 303 and "httponly" in login.headers["set-cookie"].lower()
        assert client.get("/api/runs").status_code == 200  # the cookie now rides along


def test_only_the_whole_token_is_accepted(guarded):
    for authorization in (
        "Bearer",
        "Bearer ",
        f"Bearer {TOKEN[:-1]}",
        f"Bearer {TOKEN[:1]}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN.upper()}",
        f"Basic {TOKEN}",
        TOKEN,
    ):
        assert guarded.get("/api/runs", headers={"Authorization": authorization}).status_code == 401, authorization
    assert guarded.get("/api/runs", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


def login(client: TestClient, token: str = TOKEN):
    return client.post("/login", data={"token": token}, follow_redirects=False)


def test_the_login_cookie_is_a_signed_session_not_the_token(guarded, tmp_path):
    response = login(guarded)
    cookie = response.headers["set-cookie"]
    session = guarded.cookies[SESSION_COOKIE]
    assert TOKEN not in cookie and "samesite=strict" in cookie.lower() and "secure" not in cookie.lower()
    assert guarded.get("/api/runs").status_code == 200

    def with_cookie(value: str) -> int:
        guarded.cookies.clear()
        guarded.cookies.set(SESSION_COOKIE, value)
        return guarded.get("/api/runs").status_code

    altered = session[:-1] + ("A" if session[-1] != "A" else "B")
    nonce, expiry, signature = session.split(".")
    assert with_cookie(altered) == 401
    assert with_cookie(f"{nonce}.{int(expiry) + 1}.{signature}") == 401  # a longer life is a forgery too
    expired = f"{nonce}.{int(time.time()) - 1}"
    assert with_cookie(f"{expired}.{sign_session(expired, TOKEN).decode()}") == 401
    assert with_cookie(TOKEN) == 401  # the token itself is no session
    assert with_cookie("") == 401
    # a new token signs everyone out: a session of another token is refused
    with TestClient(create_app(Settings(data_dir=tmp_path / "new", autostart=False, token=TOKEN + "-new"))) as other:
        other.cookies.set(SESSION_COOKIE, session)
        assert other.get("/api/runs").status_code == 401
    assert with_cookie(session) == 200


def test_the_cookie_is_secure_over_https(tmp_path):
    app = create_app(Settings(data_dir=tmp_path, autostart=False, token=TOKEN))
    with TestClient(app, base_url="https://testserver") as client:
        assert "secure" in login(client).headers["set-cookie"].lower()


def test_wrong_tokens_are_limited_per_address(guarded):
    assert guarded.post("/login", data={}).status_code == 401  # no token at all is a wrong one
    for _ in range(LOGIN_ATTEMPTS - 1):
        assert login(guarded, "a-wrong-guess").status_code == 401
    refused = login(guarded)  # even the right token, until the window passes
    assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
    assert SESSION_COOKIE not in guarded.cookies
    assert "try again" in refused.text
    assert guarded.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200  # the API is not


def test_logging_in_from_another_site_is_refused(guarded):
    cross_site = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
    assert guarded.post("/login", data={"token": TOKEN}, headers=cross_site).status_code == 403
    assert SESSION_COOKIE not in guarded.cookies
    same_origin = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    assert guarded.post("/login", data={"token": TOKEN}, headers=same_origin, follow_redirects=False).status_code == 303


def test_pages_carry_a_content_security_policy_and_no_cors(client):
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-eval" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    preflight = client.options(
        "/api/runs", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_a_request_body_over_the_limit_is_413_and_creates_nothing(client, settings):
    body = '{"name": "' + "x" * settings.max_body_bytes + '"}'
    response = client.post("/api/runs", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert client.get("/api/runs").json() == []


def test_plotly_is_served_locally(client):
    response = client.get("/vendor/plotly.min.js")
    assert response.status_code == 200 and len(response.content) > 1_000_000
    assert "text/javascript" in response.headers["content-type"]
    assert "https://cdn" not in client.get("/").text
