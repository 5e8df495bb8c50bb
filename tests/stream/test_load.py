"""A bounded load test on loopback: 15 reading and 5 stalled SSE clients and a loop of sample
requests for ~20 s while a run trains. No errors, training keeps going, memory flat, and the
stalled clients are dropped and, reconnecting with Last-Event-ID, get every later event."""

import threading
import time

import httpx
import psutil
import pytest

from bnscope.stream.hub import QUEUE_BYTES, RING_BYTES
from bench.hostile import sse_events
from tests.servers import SMALL, live_server, wait_for

pytestmark = pytest.mark.slow  # a real `bnscope serve` training runs, read by 20 clients for 20 s

DURATION_S = 20
READERS, STALLED = 15, 5
ENV = {"BNSCOPE_AUTOSTART": "false", "BNSCOPE_STREAM_QUEUE_SECONDS": "2"}  # a stalled client goes after 2 s


def test_twenty_streams_and_a_sample_loop_do_not_stall_training(tmp_path):
    with live_server(tmp_path / "data", env=ENV) as server:
        run = httpx.post(
            f"{server.url}/api/runs", json={"config": {**SMALL, "steps": 10_000_000, "stats_every": 5}}
        ).json()
        run_url = f"{server.url}/api/runs/{run['id']}"
        wait_for(lambda: httpx.get(run_url).json()["step"] > 100)
        process = psutil.Process(server.process.pid)
        stop = threading.Event()
        errors: list[str] = []
        received, reconnects = [0] * READERS, [0] * READERS

        def reader(i: int):
            """A browser's EventSource: cut off when it falls behind, it reconnects by its last id."""
            last = None
            while not stop.is_set():
                headers = {} if last is None else {"Last-Event-ID": str(last)}
                try:
                    with httpx.stream(
                        "GET", f"{run_url}/events", headers=headers, timeout=httpx.Timeout(10, read=30)
                    ) as response:
                        for event in sse_events(response):
                            if event["event"] != "reset" and last is not None and int(event["id"]) != last + 1:
                                errors.append(f"reader {i}: event {event['id']} after {last}: a gap")
                            last = int(event["id"])
                            received[i] += 1
                            if stop.is_set():
                                return
                except (httpx.RemoteProtocolError, httpx.ReadError):
                    reconnects[i] += 1  # dropped for falling behind: the server did not wait for it
                except httpx.HTTPError as err:
                    errors.append(f"reader {i}: {err!r}")
                    return

        stalled = [httpx.stream("GET", f"{run_url}/events", timeout=httpx.Timeout(10, read=30)) for _ in range(STALLED)]
        responses = [s.__enter__() for s in stalled]  # asked for, never read while the load runs
        threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(READERS)]
        for thread in threads:
            thread.start()

        httpx.get(f"{run_url}/samples", params={"n": 10}).raise_for_status()  # sampling's one-time set-up is not load
        rss_start = process.memory_info().rss
        step_start = httpx.get(run_url).json()["step"]
        samples, latencies = 0, []
        started = time.monotonic()
        deadline, rss_mid = started + DURATION_S, None
        with httpx.Client(timeout=10) as client:
            while time.monotonic() < deadline:
                if rss_mid is None and time.monotonic() > started + DURATION_S / 2:
                    rss_mid = process.memory_info().rss  # by now the replay ring is full: what follows must not grow
                t0 = time.perf_counter()
                response = client.get(f"{run_url}/samples", params={"n": 10})
                latencies.append(time.perf_counter() - t0)
                if response.status_code != 200:
                    errors.append(f"samples: {response.status_code} {response.text[:200]}")
                samples += 1
        step_end = httpx.get(run_url).json()["step"]
        rss_end = process.memory_info().rss
        streams = httpx.get(f"{server.url}/healthz").json()["streams"]

        # the stalled clients wake up: what reached them, the cut, then a reconnect by their last id
        for response in responses:
            seen = []
            try:
                seen.extend(sse_events(response))
            except (httpx.RemoteProtocolError, httpx.ReadError):
                pass
            last = int(seen[-1]["id"])
            with httpx.stream("GET", f"{run_url}/events", headers={"Last-Event-ID": str(last)}, timeout=30) as again:
                first = next(sse_events(again))
            assert first["event"] == "reset" or int(first["id"]) == last + 1, (last, first["id"], first["event"])
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        for s in stalled:
            s.__exit__(None, None, None)

        latencies.sort()
        print(
            f"load: {samples} sample requests (p50 {latencies[len(latencies) // 2] * 1e3:.1f} ms, "
            f"p99 {latencies[int(len(latencies) * 0.99)] * 1e3:.1f} ms), {sum(received)} events to {READERS} readers, "
            f"{(step_end - step_start) / DURATION_S:.0f} steps/s, RSS {rss_start / 2**20:.0f} -> {rss_mid / 2**20:.0f} -> "
            f"{rss_end / 2**20:.0f} MiB, "
            f"{streams} streams open at the end, {sum(reconnects)} reader reconnects"
        )
        assert errors == []
        assert streams <= READERS  # every stalled client was dropped (its stream above came to an end)
        assert samples > 20 and min(received) > 10  # every reading client kept getting events
        assert step_end - step_start > 20 * DURATION_S  # training kept going
        # bounded: what the hub may hold (the ring, a full queue for every client) and some slack for the
        # request threads' buffers; and flat once the ring is full
        assert rss_end - rss_start < RING_BYTES + (READERS + STALLED) * QUEUE_BYTES + 32 * 2**20
        assert rss_end - rss_mid < 20 * 2**20
        assert httpx.get(run_url).json()["status"] == "running"
