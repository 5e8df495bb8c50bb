"""Closed to other sites, and no input or fault that ends in a 5xx: DNS rebinding (a foreign Host),
cross-site writes, error responses that always serialise and carry the security headers, slow
request heads, oversized bodies. HTTP-level behaviour runs against the real server; the rest
in-process."""

import json
import logging
import socket
import time
import urllib.error
import urllib.request

import httpx
import pytest
from fastapi.testclient import TestClient

from bnscope.config import Settings
from bnscope.api.main import create_app
from tests.servers import SMALL, live_server, wait_for

SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "referrer-policy", "x-frame-options")
LONG = {**SMALL, "steps": 1_000_000}  # trains until stopped
LIMIT = Settings.model_fields["max_body_bytes"].default
JSON_BODY = {"Content-Type": "application/json"}
CROSS_SITE_FORM = {
    "Origin": "http://evil.example",
    "Sec-Fetch-Site": "cross-site",
    "Content-Type": "application/x-www-form-urlencoded",
}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("security") / "data"
    env = {"BNSCOPE_AUTOSTART": "false", "BNSCOPE_HEADER_TIMEOUT_S": "1"}
    with live_server(data_dir, "--allowed-hosts", "dash.example,lab.example:8443", env=env) as server:
        yield server


def assert_secured(response: httpx.Response) -> None:
    missing = [name for name in SECURITY_HEADERS if name not in response.headers]
    assert not missing, (response.status_code, missing)


# -- only the server's own names reach it


def test_a_foreign_host_is_refused_on_every_path_with_a_clear_answer(live):
    for method, path in (
        ("GET", "/"),
        ("GET", "/api/runs"),
        ("POST", "/api/runs"),
        ("DELETE", "/api/runs/1"),
        ("GET", "/openapi.json"),
        ("GET", "/static/dashboard.css"),
        ("POST", "/login"),
    ):
        response = httpx.request(method, live.url + path, headers={"Host": f"evil.example:{live.port}"}, json={})
        assert response.status_code == 400, (method, path, response.status_code)
        assert "evil.example" in response.json()["detail"] and "--allowed-hosts" in response.json()["detail"]
        assert_secured(response)
    assert httpx.get(live.url + "/api/runs").json() == []  # the POST created nothing


def test_localhost_names_and_allowed_hosts_get_through_and_healthz_is_open_to_probes(live):
    for host in ("localhost", "127.0.0.1", "[::1]", "dash.example", "DASH.example"):
        response = httpx.get(live.url + "/api/runs", headers={"Host": f"{host}:{live.port}"})
        assert response.status_code == 200, host
    assert httpx.get(live.url + "/api/runs", headers={"Host": "other.example"}).status_code == 400
    # orchestrators probe by the container's IP, which no one can name in advance
    assert httpx.get(live.url + "/healthz", headers={"Host": "10.1.2.3:8000"}).status_code == 200


# names that end, begin or read like one of the server's (security.py's HOST RULE): with any matching
# looser than whole-name equality, a DNS-rebound page under one of them would reach the server
LOOK_ALIKES = {
    "a suffix or a prefix": ("evil-localhost", "xlocalhost", "localhostx", "ocalhost", "evildash.example", "dash.exam"),
    "an extra label": ("evil.localhost", "localhost.evil.example", ".localhost", "www.dash.example", "dash.example.io"),
    "the bound address with an extra label": ("evil.127.0.0.1", "127.0.0.1.evil.example", "127.0.0.1.nip.io"),
    "an IPv6 form that is not [::1]": ("[::2]", "[::1].evil", "[::ffff:127.0.0.1]", "[fe80::1]", "[::]", "::1:8000"),
    "another spelling or a neighbour of 127.0.0.1": ("127.1", "2130706433", "0x7f000001", "127.0.0.2", "127.0.0.10"),
    "trailing dots (one is the same name, more are no name)": ("localhost..", "evil.localhost.", "dash.example.evil."),
    "mixed case": ("Evil-LocalHost", "EVIL.Dash.Example", "LOCALHOST.Evil"),
}
# an --allowed-hosts entry with a port (lab.example:8443) admits its name on that port only
PORT_MISMATCHES = ("lab.example:8444", "lab.example:84430", "lab.example", "lab.example:443", "localhost:99999")
# the port of a local name may be anything: an SSH tunnel or a port mapping changes it
ADMITTED = (
    "localhost:{port}",
    "LocalHost:{port}",
    "localhost.:{port}",
    "[::1]:{port}",
    "127.0.0.1.:{port}",
    "DASH.Example.:{port}",
    "dash.example",
    "lab.example:8443",
    "localhost:1",
    "localhost",
)


def host_refused(response: httpx.Response) -> bool:
    return response.status_code == 400 and "is not a name of this server" in response.json()["detail"]


def test_look_alike_hosts_are_refused(live):
    hosts = [(kind, name) for kind, names in LOOK_ALIKES.items() for name in names]
    sent = [(kind, each) for kind, name in hosts for each in (name, f"{name}:{live.port}")]
    sent += [("a port mismatch", host) for host in PORT_MISMATCHES]
    with httpx.Client(base_url=live.url) as client:
        let_through = [
            (kind, host, response.status_code)
            for kind, host in sent
            if not host_refused(response := client.get("/api/runs", headers={"Host": host}))
        ]
    assert not let_through, f"look-alike hosts reached the server: {let_through}"


def test_the_servers_own_names_get_through_on_any_port(live):
    with httpx.Client(base_url=live.url) as client:
        answers = {host: client.get("/api/runs", headers={"Host": host.format(port=live.port)}) for host in ADMITTED}
    refused = {host: response.status_code for host, response in answers.items() if response.is_error}
    assert not refused, f"the server's own names were refused: {refused}"


def test_the_bound_address_is_a_name_only_as_a_whole(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path, autostart=False, host="127.0.0.2"))) as client:
        assert client.get("/api/runs", headers={"Host": "127.0.0.2:8000"}).status_code == 200
        for host in ("evil.127.0.0.2", "127.0.0.2.evil.example", "127.0.0.20", "27.0.0.2", "127.0.0.2.."):
            assert host_refused(client.get("/api/runs", headers={"Host": f"{host}:8000"})), host


def test_bound_to_every_interface_only_localhost_and_allowed_names_get_through(tmp_path, monkeypatch):
    monkeypatch.setenv("BNSCOPE_ALLOWED_HOSTS", "dash.example, lab.example:8443,")
    settings = Settings(data_dir=tmp_path, autostart=False, host="0.0.0.0", token="s3cret-token-for-tests")
    assert settings.allowed_hosts == ["dash.example", "lab.example:8443"]
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/runs").status_code == 400  # TestClient's "testserver" is no name of 0.0.0.0
        assert client.get("/api/runs", headers={"Host": "lab.example:8443"}).status_code == 401  # on to the token check
        assert client.get("/api/runs", headers={"Host": "localhost:8000"}).status_code == 401
        assert client.get("/api/runs", headers={"Host": "192.168.1.20:8000"}).status_code == 400
    with pytest.raises(ValueError, match="http://dash.example/"):  # a URL is not a host name
        create_app(Settings(data_dir=tmp_path, allowed_hosts=["ok.example", "http://dash.example/"]))


# -- no cross-site writes


def test_a_cross_site_form_changes_nothing(live):
    runs_before = len(httpx.get(live.url + "/api/runs").json())
    run = httpx.post(live.url + "/api/runs", json={"config": LONG}).json()
    run_url = f"{live.url}/api/runs/{run['id']}"
    wait_for(lambda: httpx.get(run_url).json()["status"] == "running")
    try:
        for action in ("pause", "stop"):
            response = httpx.post(f"{run_url}/{action}", headers=CROSS_SITE_FORM, content=b"")
            assert response.status_code == 403, action
            assert_secured(response)
        assert httpx.delete(run_url, headers={"Origin": "http://evil.example"}).status_code == 403
        response = httpx.post(live.url + "/api/runs", headers=CROSS_SITE_FORM, content=b"name=x")
        assert response.status_code == 403
        assert httpx.get(run_url).json()["status"] == "running"
        assert len(httpx.get(live.url + "/api/runs").json()) == runs_before + 1

        # each sign alone is enough
        assert httpx.post(f"{run_url}/pause", headers={"Sec-Fetch-Site": "same-site"}).status_code == 403
        assert httpx.post(f"{run_url}/pause", headers={"Origin": "null"}).status_code == 403
        assert httpx.post(f"{run_url}/pause", headers={"Origin": "http://127.0.0.1:1"}).status_code == 403
        for content_type in ("application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"):
            response = httpx.post(f"{run_url}/pause", headers={"Content-Type": content_type}, content=b"")
            assert response.status_code == 415, content_type
        assert httpx.post(f"{run_url}/pause", content=b"{}").status_code == 415  # a body needs a content type
        assert httpx.get(run_url).json()["status"] == "running"

        # the dashboard's own requests, and curl's bodyless POST, still work
        page = {"Origin": live.url, "Sec-Fetch-Site": "same-origin"}
        assert httpx.patch(run_url, headers=page, json={"lr": 0.05}).status_code == 200
        assert httpx.post(f"{run_url}/pause", headers=page).json()["status"] == "paused"
        assert httpx.post(f"{run_url}/resume").status_code == 200
    finally:
        assert httpx.post(f"{run_url}/stop").status_code == 200


# -- errors: always JSON, always with the security headers


def test_non_finite_and_unencodable_inputs_are_a_422_naming_the_field(client):
    for path, method, body, field in (
        ("/api/runs", "POST", b'{"config": {"lr": NaN}}', "lr"),
        ("/api/runs", "POST", b'{"config": {"gain": -Infinity}}', "gain"),
        ("/api/runs/1", "PATCH", b'{"lr": Infinity}', "lr"),
        ("/api/runs", "POST", b'{"config": {"init": "\\ud800"}}', "init"),  # a lone surrogate: no UTF-8 for it
        ("/api/runs", "POST", b'{"config": {"n_hidden": true}}', "n_hidden"),  # not read as 1
        ("/api/runs", "POST", b'{"config": {"lr": false}}', "lr"),
    ):
        response = client.request(method, path, content=body, headers=JSON_BODY)
        assert response.status_code == 422, (body, response.status_code)
        assert field in response.json()["detail"][0]["loc"]
    assert client.get("/api/runs").json() == []


def test_an_unexpected_error_is_a_json_500_with_an_id_that_is_in_the_log(tmp_path, caplog):
    app = create_app(Settings(data_dir=tmp_path, autostart=False))

    @app.app.get("/api/fault")
    def fault():
        raise RuntimeError("the disk caught fire")

    with TestClient(app) as client, caplog.at_level(logging.ERROR, logger="bnscope"):
        response = client.get("/api/fault")
    assert response.status_code == 500
    body = response.json()
    assert body["detail"] == "internal error" and "fire" not in response.text  # no internals to the client
    assert_secured(response)
    [record] = [r for r in caplog.records if body["error_id"] in r.getMessage()]
    assert "the disk caught fire" in caplog.text and "Traceback" in caplog.text and record.exc_info


def test_a_405_lists_every_method_the_path_takes(client):
    response = client.put("/api/runs/1")
    assert response.status_code == 405 and set(response.headers["allow"].split(", ")) == {"GET", "PATCH", "DELETE"}
    assert_secured(response)
    assert set(client.delete("/api/runs").headers["allow"].split(", ")) == {"GET", "POST"}
    assert set(client.post("/static/dashboard.css").headers["allow"].split(", ")) == {"GET", "HEAD"}


def test_a_full_run_queue_says_when_to_try_again(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path, autostart=False, max_runs=1, max_queued=0))) as client:
        run = client.post("/api/runs", json={"config": LONG}).json()
        try:
            refused = client.post("/api/runs", json={"config": SMALL})
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        finally:
            client.post(f"/api/runs/{run['id']}/stop")


# -- HTTP hygiene


def read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def seconds_until_closed(sock: socket.socket, limit: float = 10.0) -> float:
    sock.settimeout(limit)
    start = time.monotonic()
    assert sock.recv(1024) == b""  # closed, and no answer was sent
    return time.monotonic() - start


def test_a_slow_request_head_is_closed_after_the_header_timeout(live):
    with socket.create_connection(("127.0.0.1", live.port)) as sock:
        sock.sendall(b"GET /healthz HT")  # half a request line, then nothing
        assert 0.8 < seconds_until_closed(sock) < 3
    with socket.create_connection(("127.0.0.1", live.port)) as sock:  # connects, says nothing
        assert 0.8 < seconds_until_closed(sock) < 3
    with socket.create_connection(("127.0.0.1", live.port)) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n\r\n".encode())
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")  # the next request on the kept-alive connection
        assert seconds_until_closed(sock) < 3  # sooner than uvicorn's 5 s keep-alive timeout


def test_an_oversized_body_gets_a_readable_413_with_or_without_content_length(live):
    runs_before = httpx.get(live.url + "/api/runs").json()
    over = b'{"name": "' + b"x" * (4 * LIMIT) + b'"}'

    def chunked():
        for start in range(0, len(over), 4096):
            yield over[start : start + 4096]

    with httpx.Client(base_url=live.url) as client:
        for content in (over, chunked()):
            response = client.post("/api/runs", content=content, headers=JSON_BODY)
            assert response.status_code == 413
            assert str(LIMIT) in response.json()["detail"]
            assert_secured(response)
        assert client.get("/api/runs").json() == runs_before  # nothing created; the same connection goes on
    # urllib sends all of a body before it reads, and asks the server to close after: were the
    # body left unread, the close would reset the connection under it
    request = urllib.request.Request(live.url + "/api/runs", data=b"x" * (10 << 20), headers=JSON_BODY)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413 and str(LIMIT) in json.loads(refused.value.read())["detail"]


def test_a_body_just_within_the_limit_is_read_whole(live):
    name = "n" * 100
    body = json.dumps({"name": name, "config": SMALL}).encode()
    padded = body[:-1] + b" " * (LIMIT - len(body)) + b"}"
    assert len(padded) == LIMIT
    response = httpx.post(live.url + "/api/runs", content=padded, headers=JSON_BODY)
    assert response.status_code == 201 and response.json()["name"] == name
