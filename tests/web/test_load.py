"""A bounded load test on loopback: 20 SSE clients (5 of which never read) and a loop of
sample requests for ~20 s while a run trains. No errors, training keeps going, memory flat."""

import socket
import threading
import time

import httpx
import psutil

from tests.web.conftest import SMALL, sse_events, wait_for

DURATION_S = 20
READERS, STALLED = 15, 5


def test_twenty_streams_and_a_sample_loop_do_not_stall_training(server):
    run = httpx.post(f"{server.url}/api/runs", json={"config": {**SMALL, "steps": 10_000_000}}).json()
    run_url = f"{server.url}/api/runs/{run['id']}"
    wait_for(lambda: httpx.get(run_url).json()["step"] > 100)
    process = psutil.Process(server.process.pid)
    stop = threading.Event()
    errors: list[str] = []
    received = [0] * READERS

    def reader(i: int):
        try:
            with httpx.stream("GET", f"{run_url}/events", timeout=httpx.Timeout(10, read=30)) as response:
                for _ in sse_events(response):
                    received[i] += 1
                    if stop.is_set():
                        return
        except httpx.HTTPError as err:
            errors.append(f"reader {i}: {err!r}")

    stalled = []
    for _ in range(STALLED):  # connect, ask for the stream, never read a byte of it
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(f"GET /api/runs/{run['id']}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        stalled.append(sock)
    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(READERS)]
    for thread in threads:
        thread.start()

    rss_start = process.memory_info().rss
    step_start = httpx.get(run_url).json()["step"]
    samples, latencies = 0, []
    deadline = time.monotonic() + DURATION_S
    with httpx.Client(timeout=10) as client:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            response = client.get(f"{run_url}/samples", params={"n": 10})
            latencies.append(time.perf_counter() - t0)
            if response.status_code != 200:
                errors.append(f"samples: {response.status_code} {response.text[:200]}")
            samples += 1
    step_end = httpx.get(run_url).json()["step"]
    rss_end = process.memory_info().rss
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    for sock in stalled:
        sock.close()

    latencies.sort()
    print(
        f"load: {samples} sample requests (p50 {latencies[len(latencies) // 2] * 1e3:.1f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99)] * 1e3:.1f} ms), {sum(received)} events to {READERS} readers, "
        f"{(step_end - step_start) / DURATION_S:.0f} steps/s, RSS {rss_start / 2**20:.0f} -> {rss_end / 2**20:.0f} MiB"
    )
    assert errors == []
    assert samples > 20 and min(received) > 10  # every reading client kept getting events
    assert step_end - step_start > 20 * DURATION_S  # training kept going
    assert rss_end - rss_start < 50 * 2**20  # memory flat (the stalled clients' queues are bounded)
    assert httpx.get(run_url).json()["status"] == "running"
