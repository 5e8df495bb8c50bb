"""The server holds under hostile clients, on loopback against the real server: stalled stream readers,
slow request heads and slow request bodies all at once leave /healthz, GET samples and a reading
stream client working, and are let go of within the documented bounds (reset, not closed
gracefully for ever); connections and streams past their caps get a 503 or a 429 with Retry-After.
Clients connect from addresses of 127.0.0.0/8 other than 127.0.0.1 to stand for other machines."""

import socket

import httpx
import pytest

from bench.hostile import ENV, RCVBUF, RUN, attack, server_sockets, sse_events
from bnscope.stream.hub import RING_BYTES
from tests.servers import SMALL, live_server, wait_for

CAPS = {
    "BNSCOPE_AUTOSTART": "false",
    "BNSCOPE_HEADER_TIMEOUT_S": "30",  # longer than a test: idle connections stay
    "BNSCOPE_BODY_TIMEOUT_S": "1",
    "BNSCOPE_SEND_TIMEOUT_S": "2",
    "BNSCOPE_MAX_CONNECTIONS": "6",
    "BNSCOPE_MAX_CONNECTIONS_PER_ADDRESS": "3",
    "BNSCOPE_MAX_STREAMS": "4",
    "BNSCOPE_MAX_STREAMS_PER_ADDRESS": "2",
    "BNSCOPE_STREAM_QUEUE_SECONDS": "1",  # dropped by time, not bytes: only once its socket takes nothing
}


@pytest.mark.slow
def test_stalled_readers_slow_heads_and_slow_bodies_at_once_leave_the_server_working(tmp_path):
    with live_server(tmp_path / "data", env=ENV) as server:
        run = httpx.post(f"{server.url}/api/runs", json={"config": RUN}).json()
        wait_for(lambda: httpx.get(f"{server.url}/api/runs/{run['id']}").json()["step"] > 100)
        result = attack(server.url, server.process.pid, run["id"])

    summary = {key: result[key] for key in ("opened_s", "released_s", "healthz", "samples", "reader", "streams_after")}
    print(f"hostile: {summary}, RSS {result['rss_start_mib']:.0f} -> {result['rss_peak_mib']:.0f} MiB")
    counts, reader = result["counts"], result["reader"]
    opened = counts["readers"] + counts["heads"] + counts["bodies"]
    assert max(held for _, held, _ in result["timeline"]) > 0.9 * opened  # the server did hold them at first
    assert result["errors"] == []  # every /healthz and GET samples answered 200
    assert reader["gaps"] == [] and reader["error"] is None and reader["events"] > 100  # (cut, it reconnects)
    assert result["released_s"] is not None  # then the server holds no hostile socket (nor an orphan with data)
    assert result["streams_after"] == 0
    # what the hub may hold for each stalled reader (its queue, a paused socket's 64 KiB, a frame) and the ring
    hub_mib = (counts["readers"] * (int(ENV["BNSCOPE_STREAM_QUEUE_BYTES"]) + 2**17) + RING_BYTES) / 2**20
    assert result["rss_peak_mib"] - result["rss_start_mib"] < hub_mib + 32
    for outcome in result["reconnects"]:  # a cut reader, reconnecting with its last id, misses nothing
        first, last = outcome["first"], outcome["last"]
        assert first == last + 1 or (outcome["event"] == "reset" and first >= last), outcome


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("hostile") / "data", env=CAPS) as server:
        server.run_id = httpx.post(f"{server.url}/api/runs", json={"config": SMALL}).json()["id"]
        yield server


def client_from(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=httpx.Timeout(10, read=30))


def connect_from(address: str, port: int, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((address, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def let_go(server, address: str, within_s: float) -> None:
    """Wait until the server holds no socket to `address`, an orphan with unsent data included."""
    wait_for(lambda: server_sockets(server.port, {address}) == 0, timeout=within_s)


def refused(response: httpx.Response, status: int) -> bool:
    return response.status_code == status and int(response.headers["retry-after"]) >= 1


def test_streams_past_the_caps_get_429_per_address_and_503_overall(capped):
    events = f"{capped.url}/api/runs/{capped.run_id}/events"
    a, b, c, d = (client_from(f"127.0.0.{21 + i}") for i in range(4))
    with a, b, c, d:
        with a.stream("GET", events) as first, a.stream("GET", events), b.stream("GET", events):
            assert first.status_code == 200
            assert refused(a.get(events), 429)  # a third from one address
            with c.stream("GET", events) as fourth:
                assert fourth.status_code == 200
                assert refused(d.get(events), 503)  # a fifth in all
        wait_for(lambda: stream_status(d, events) == 200)  # their slots come back once the server sees them go


def stream_status(client: httpx.Client, url: str) -> int:
    with client.stream("GET", url) as response:
        return response.status_code


def test_connections_past_the_caps_get_429_per_address_and_503_overall(capped):
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{capped.port}\r\n\r\n".encode()

    def answer(address: str) -> bytes:
        with connect_from(address, capped.port) as sock:
            sock.sendall(request)
            sock.settimeout(10)
            return sock.recv(65536)

    wait_for(lambda: server_sockets(capped.port, {"127.0.0.1"}) == 0)  # earlier tests' connections are gone
    idle = [connect_from(address, capped.port) for address in ["127.0.0.31"] * 3 + ["127.0.0.32"] * 3]
    try:
        wait_for(lambda: server_sockets(capped.port, {"127.0.0.31", "127.0.0.32"}) == 6)
        assert answer("127.0.0.31").startswith(b"HTTP/1.1 429")  # a fourth from one address
        response = answer("127.0.0.33")
        assert response.startswith(b"HTTP/1.1 503") and b"retry-after: 5" in response.lower()  # a seventh in all
        wait_for(lambda: server_sockets(capped.port, {"127.0.0.31", "127.0.0.33"}) == 3)  # the answered ones are gone
        # past twice the cap, a new connection is reset at once, unanswered
        extra = [connect_from(f"127.0.0.{34 + i}", capped.port) for i in range(8)]
        wait_for(lambda: server_sockets(capped.port, {f"127.0.0.{34 + i}" for i in range(8)}) == 6)
        cut = []
        for sock in extra:
            sock.settimeout(0.2)
            try:
                cut.append(sock.recv(1) == b"" and "closed")
            except ConnectionResetError:
                cut.append("reset")
            except TimeoutError:
                cut.append("open")
            sock.close()
        assert cut == ["open"] * 6 + ["reset"] * 2  # connections 7-12 wait for their request; 13 on are cut
    finally:
        for sock in idle:
            sock.close()
    wait_for(lambda: answer("127.0.0.33").startswith(b"HTTP/1.1 200"))  # the slots came back


def test_a_slow_request_body_is_cut_after_the_body_timeout(capped):
    with connect_from("127.0.0.41", capped.port) as sock:
        head = f"POST /api/runs HTTP/1.1\r\nHost: 127.0.0.1:{capped.port}\r\nContent-Type: application/json\r\n"
        sock.sendall(f"{head}Content-Length: 100\r\n\r\n{{".encode())  # then nothing more
        let_go(capped, "127.0.0.41", within_s=float(CAPS["BNSCOPE_BODY_TIMEOUT_S"]) + 3)
        with pytest.raises(ConnectionResetError):
            sock.recv(1)


def test_a_response_its_client_takes_nothing_of_is_cut_after_the_send_timeout(capped):
    # Plotly.js (~4.6 MB) outgrows the socket buffers: the server's copy waits for a client that never reads
    with connect_from("127.0.0.51", capped.port, rcvbuf=RCVBUF) as sock:
        sock.sendall(f"GET /vendor/plotly.min.js HTTP/1.1\r\nHost: 127.0.0.1:{capped.port}\r\n\r\n".encode())
        wait_for(lambda: server_sockets(capped.port, {"127.0.0.51"}) == 1, timeout=5)
        let_go(capped, "127.0.0.51", within_s=float(CAPS["BNSCOPE_SEND_TIMEOUT_S"]) + 3)
        sock.settimeout(5)
        with pytest.raises(ConnectionResetError):  # what reached it, then the reset
            while sock.recv(65536):
                pass


@pytest.mark.slow
def test_a_reader_that_stops_reading_is_reset_and_resumes_without_a_gap(capped):
    run_id = httpx.post(f"{capped.url}/api/runs", json={"config": RUN}).json()["id"]
    events = f"{capped.url}/api/runs/{run_id}/events"
    try:
        with client_from("127.0.0.61") as client, client.stream("GET", events) as stalled:
            assert stalled.status_code == 200
            # never read: the socket buffers fill, its queue passes its bounds, and the server lets it go for good
            let_go(capped, "127.0.0.61", within_s=60)
            ids = []
            with pytest.raises(httpx.ReadError):  # what had reached it, then a reset: not a clean end
                ids.extend(int(event["id"]) for event in sse_events(stalled))
        assert ids == list(range(ids[0], ids[-1] + 1))
        with httpx.stream("GET", events, headers={"Last-Event-ID": str(ids[-1])}, timeout=30) as again:
            first = next(sse_events(again))
        assert int(first["id"]) == ids[-1] + 1 or (first["event"] == "reset" and int(first["id"]) >= ids[-1])
    finally:
        httpx.post(f"{capped.url}/api/runs/{run_id}/stop")
