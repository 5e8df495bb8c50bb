"""Access control and hardening headers."""

import subprocess
import sys

from fastapi.testclient import TestClient

from bnscope.config import Settings
from bnscope.server import create_app

TOKEN = "s3cret-token-for-tests"


def test_serving_beyond_loopback_without_a_token_is_refused(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bnscope.cli", "serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 2
    assert "token" in result.stderr and "0.0.0.0" in result.stderr


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


def test_pages_carry_a_content_security_policy_and_no_cors(client):
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-eval" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    preflight = client.options("/api/runs", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
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
