"""Hostile clients against a real `bnscope serve`, on loopback and bounded in count and time: stalled
stream readers (a 4 KiB receive buffer, never read), slow request heads and slow request bodies (a
byte every DRIP_S), all at once, while a user's own clients go on: /healthz and GET samples in a loop,
and a stream reader that reads everything.

    attack(url, pid, run_id)   what the user's clients saw, the hostile sockets the server held over
                               time, its memory, and what readers it cut got on reconnecting

tests/stream/test_hostile.py asserts on it; the `hostile` section of `python -m bench` reports it. The
hostile clients connect from 127.0.0.2 upwards, PER_ADDRESS to an address (inside the server's
per-address caps), so that the server's sockets to them are told apart from the user's (127.0.0.1).
"""

import socket
import ssl
import threading
import time
from contextlib import ExitStack

import httpx
import psutil

from bench.common import percentiles
from bench.server import LONG, BenchServer

# short bounds, so that the server lets go of the hostile clients within seconds
ENV = {
    "BNSCOPE_AUTOSTART": "false",
    "BNSCOPE_HEADER_TIMEOUT_S": "2",
    "BNSCOPE_BODY_TIMEOUT_S": "2",
    "BNSCOPE_SEND_TIMEOUT_S": "3",
    "BNSCOPE_STREAM_QUEUE_SECONDS": "2",
    "BNSCOPE_STREAM_QUEUE_BYTES": str(512 * 1024),  # what each stalled reader may cost in the server's memory
}
# a run whose stream fills a stalled reader's socket buffers in seconds: 0.5-2 MB/s, as fast as it trains
RUN = {"n_hidden": 32, "n_layers": 2, "steps": LONG, "stats_every": 20, "dev_every": 1000}
PER_ADDRESS = 10
DRIP_S = 0.5
RCVBUF = 4096
SAMPLE_EVERY_S = 0.5
TIMEOUT = httpx.Timeout(10, read=30)
COUNTS = (100, 100, 20)  # stalled stream readers, slow request heads, slow request bodies
RELEASE_S = 60.0  # after the window: how long the server may take to let go of them all (it needs seconds)


def sse_events(response: httpx.Response):
    """{id, event, data} of each whole event of a text/event-stream (comments skipped)."""
    event: dict = {}
    for line in response.iter_lines():
        if not line:
            if "data" in event:
                yield event
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")


def server_sockets(port: int, addresses: set[str]) -> int:
    """The sockets of the server on `port` to clients at `addresses`, machine-wide: those it has open and
    the orphans the kernel still holds unsent data for after a graceful close (FIN_WAIT1), not the
    dataless ends of a close (FIN_WAIT2, TIME_WAIT)."""
    gone = (psutil.CONN_FIN_WAIT2, psutil.CONN_TIME_WAIT)
    ours = [c for c in psutil.net_connections("tcp") if c.laddr.port == port and c.raddr and c.raddr.ip in addresses]
    return sum(1 for c in ours if c.status not in gone)


class Hostile:
    """The hostile clients, opened on entering, closed on leaving; a thread drips the slow ones."""

    def __init__(self, url: str, run_id: int, readers: int, heads: int, bodies: int):
        self.url, self.run_id, self.counts = url, run_id, (readers, heads, bodies)
        self.port = httpx.URL(url).port
        self.addresses: set[str] = set()
        self.streams: list[httpx.Response] = []
        self.slow: list[socket.socket] = []
        self.stack = ExitStack()
        self.stop = threading.Event()
        self._opened = 0

    def _address(self) -> str:
        address = f"127.0.0.{2 + self._opened // PER_ADDRESS}"
        self._opened += 1
        self.addresses.add(address)
        return address

    def __enter__(self) -> "Hostile":
        readers, heads, bodies = self.counts
        host = f"Host: 127.0.0.1:{self.port}\r\n"
        tls = ssl.create_default_context()  # never used (plain HTTP), but a transport makes one otherwise: ~50 ms
        options = [(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)]
        for _ in range(readers):  # each asks for the stream, reads its head, then never reads again
            transport = httpx.HTTPTransport(verify=tls, local_address=self._address(), socket_options=options)
            client = self.stack.enter_context(httpx.Client(transport=transport, timeout=TIMEOUT))
            stream = client.stream("GET", f"{self.url}/api/runs/{self.run_id}/events")
            self.streams.append(self.stack.enter_context(stream))
        begun = [f"GET /healthz HTTP/1.1\r\n{host}".encode()] * heads
        json_head = "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        begun += [f"POST /api/runs HTTP/1.1\r\n{host}{json_head}".encode()] * bodies
        for first in begun:
            sock = socket.create_connection(("127.0.0.1", self.port), source_address=(self._address(), 0))
            self.stack.callback(sock.close)
            sock.sendall(first)
            self.slow.append(sock)
        threading.Thread(target=self._drip, daemon=True).start()
        return self

    def _drip(self) -> None:
        """A byte more of each slow head (a header's name) or body (a space), until the server cuts it."""
        live = list(self.slow)
        while live and not self.stop.wait(DRIP_S):
            for sock in list(live):
                try:
                    sock.send(b"x" if sock in self.slow[: self.counts[1]] else b" ")
                except OSError:
                    live.remove(sock)

    def reconnect(self, count: int) -> list[dict]:
        """Some cut readers wake up: the events that had reached them, then the reset; each reconnects with
        Last-Event-ID and says which event came first."""
        outcomes = []
        for response in self.streams[:count]:
            ids = []
            try:
                ids.extend(int(event["id"]) for event in sse_events(response))
            except (httpx.RemoteProtocolError, httpx.ReadError):
                pass
            last = ids[-1] if ids else 0
            headers = {"Last-Event-ID": str(last)}
            with httpx.stream("GET", f"{self.url}/api/runs/{self.run_id}/events", headers=headers, timeout=30) as again:
                first = next(sse_events(again))
            outcomes.append({"last": last, "first": int(first["id"]), "event": first["event"], "ids": ids})
        return outcomes

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.stack.close()


class Reader(threading.Thread):
    """A user's stream reader, as the page's EventSource: reads every event and, cut, reconnects with its
    last id. Records the gaps in the ids it got (a snapshot covers all before its id), and its cuts."""

    def __init__(self, events_url: str):
        super().__init__(daemon=True)
        self.events_url = events_url
        self.last: int | None = None
        self.events, self.bytes, self.cuts = 0, 0, 0
        self.gaps: list[tuple[int, int]] = []
        self.error: str | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            headers = {} if self.last is None else {"Last-Event-ID": str(self.last)}
            try:
                with httpx.stream("GET", self.events_url, headers=headers, timeout=TIMEOUT) as response:
                    response.raise_for_status()
                    for event in sse_events(response):
                        self._got(int(event["id"]), event["event"], len(event["data"]))
                        if self.stopping.is_set():
                            return
            except (httpx.RemoteProtocolError, httpx.ReadError):
                self.cuts += 1
            except httpx.HTTPError as err:
                self.error = f"{err!r} after {self.events} events"
                return

    def _got(self, event_id: int, kind: str, size: int) -> None:
        if self.last is not None and kind != "reset" and event_id != self.last + 1:
            self.gaps.append((self.last, event_id))
        self.last, self.events, self.bytes = event_id, self.events + 1, self.bytes + size

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)


def attack(url: str, pid: int, run_id: int, counts: tuple[int, int, int] = COUNTS, window_s: float = 10.0) -> dict:
    """The hostile clients (`counts`: stalled readers, slow heads, slow bodies) all at once, the user's clients
    meanwhile for `window_s`, then up to RELEASE_S for the server to let go of every hostile socket; the
    server's RSS before, at its peak (sampled) and after."""
    readers, heads, bodies = counts
    process = psutil.Process(pid)
    run_url = f"{url}/api/runs/{run_id}"
    latencies: dict[str, list[float]] = {"healthz": [], "samples": []}
    errors: list[str] = []
    with httpx.Client(timeout=10) as client:
        client.get(f"{run_url}/samples", params={"n": 10}).raise_for_status()  # sampling's one-time set-up
        rss_start = process.memory_info().rss
        reader = Reader(f"{run_url}/events")
        reader.start()
        started = time.monotonic()
        timeline: list[tuple[float, int, float]] = []  # (seconds since the attack began, held, RSS MiB)

        def sample(hostile: Hostile) -> int:
            held = server_sockets(hostile.port, hostile.addresses)
            timeline.append((time.monotonic() - started, held, process.memory_info().rss / 2**20))
            return held

        with Hostile(url, run_id, readers, heads, bodies) as hostile:
            opened_s = time.monotonic() - started
            next_sample = 0.0
            while time.monotonic() < started + opened_s + window_s:
                if time.monotonic() >= next_sample:
                    sample(hostile)
                    next_sample = time.monotonic() + SAMPLE_EVERY_S
                for name, path, params in (("healthz", "/healthz", {}), ("samples", f"{run_url}/samples", {"n": 10})):
                    t0 = time.perf_counter()
                    try:
                        response = client.get(url + path if path.startswith("/") else path, params=params)
                    except httpx.HTTPError as err:
                        errors.append(f"{name}: {err!r}")
                        continue
                    latencies[name].append(time.perf_counter() - t0)
                    if response.status_code != 200:
                        errors.append(f"{name}: {response.status_code} {response.text[:200]}")
            while time.monotonic() < started + opened_s + window_s + RELEASE_S and sample(hostile):
                time.sleep(SAMPLE_EVERY_S)
            released_s = next((t for t, held, _ in timeline if held == 0), None)  # none are opened after
            rss_end = process.memory_info().rss
            reconnects = hostile.reconnect(3)
        reader.stop()
        streams_after = client.get(f"{url}/healthz").json()["streams"]
    return {
        "counts": {"readers": readers, "heads": heads, "bodies": bodies, "addresses": len(hostile.addresses)},
        "opened_s": opened_s,
        "window_s": window_s,
        "released_s": released_s,
        "timeline": timeline,
        "healthz": percentiles(latencies["healthz"]),
        "samples": percentiles(latencies["samples"]),
        "errors": errors,
        "reader": {"events": reader.events, "gaps": reader.gaps, "cuts": reader.cuts, "error": reader.error},
        "stream_mb_s": reader.bytes / 1e6 / (time.monotonic() - started),
        "reconnects": reconnects,
        "streams_after": streams_after,
        "rss_start_mib": rss_start / 2**20,
        "rss_peak_mib": max(t[2] for t in timeline),
        "rss_end_mib": rss_end / 2**20,
    }


# ---- the `hostile` section of python -m bench ---------------------------------------------------------
TITLE = "Hostile clients: stalled readers, slow heads and slow bodies at once"


def measure(quick: bool, log=print) -> dict:
    """The user's clients alone, then beside the hostile ones, on one server and one run."""
    counts, window_s = ((10, 10, 2), 4.0) if quick else (COUNTS, 10.0)
    with BenchServer(**ENV) as server:
        run_id = server.create(**RUN)["id"]
        server.wait_for(run_id, "running")
        log("  the user's clients alone")
        quiet = attack(server.url, server.process.pid, run_id, counts=(0, 0, 0), window_s=window_s)
        log(f"  beside {counts[0]} stalled readers, {counts[1]} slow heads, {counts[2]} slow bodies")
        hostile = attack(server.url, server.process.pid, run_id, counts=counts, window_s=window_s)
    return {"quiet": quiet, "hostile": hostile, "env": ENV}


def _ms(p: dict) -> str:
    return f"{p['p50'] * 1e3:.0f} / {p['p99'] * 1e3:.0f} ms (n={p['n']})"


def _reader(r: dict) -> str:
    failed = "" if r["error"] is None else f", failed: {r['error']}"
    return f"{r['events']} events, {len(r['gaps'])} gaps, cut and reconnected {r['cuts']} times{failed}"


def markdown(r: dict) -> str:
    quiet, hostile, env = r["quiet"], r["hostile"], r["env"]
    c = hostile["counts"]
    shortened = {key.removeprefix("BNSCOPE_").lower(): value for key, value in env.items()}
    bounds = ", ".join(f"{name} {value}" for name, value in shortened.items() if name != "autostart")
    released = "never" if hostile["released_s"] is None else f"{hostile['released_s']:.1f} s after the first connected"
    rows = [
        "| | the user's clients alone | beside the hostile clients |",
        "|---|---|---|",
        f"| `GET /healthz`, p50 / p99 | {_ms(quiet['healthz'])} | {_ms(hostile['healthz'])} |",
        f"| `GET samples?n=10`, p50 / p99 | {_ms(quiet['samples'])} | {_ms(hostile['samples'])} |",
        f"| failed requests | {len(quiet['errors'])} | {len(hostile['errors'])} |",
        f"| a stream reader over the window | {_reader(quiet['reader'])} | {_reader(hostile['reader'])} |",
        f"| server RSS: before → peak → after | {quiet['rss_start_mib']:.0f} → {quiet['rss_peak_mib']:.0f} → "
        f"{quiet['rss_end_mib']:.0f} MiB | {hostile['rss_start_mib']:.0f} → {hostile['rss_peak_mib']:.0f} → "
        f"{hostile['rss_end_mib']:.0f} MiB |",
        f"| every hostile socket let go | | {released} |",
    ]
    reconnects = ", ".join(f"after id {o['last']}: {o['event']} {o['first']}" for o in hostile["reconnects"])
    timeline = ["| seconds since the first connected | hostile sockets the server holds | server RSS (MiB) |"]
    timeline.append("|---|---|---|")
    shown = -1.0
    for t, held, rss in hostile["timeline"]:
        if t >= shown + 1 or held == 0:
            timeline.append(f"| {t:.1f} | {held} | {rss:.0f} |")
            shown = t
        if held == 0:
            break
    return (
        f"{c['readers']} stalled stream readers (a {RCVBUF // 1024} KiB receive buffer, never read), {c['heads']} slow "
        f"request heads and {c['bodies']} slow request bodies (a byte every {DRIP_S} s), from {c['addresses']} "
        f"loopback addresses, all opened at once ({hostile['opened_s']:.1f} s), while one run streams "
        f"{hostile['stream_mb_s']:.2f} MB/s (stats every {RUN['stats_every']} steps) and the user's clients, on "
        f"127.0.0.1, request /healthz and samples in turn and read the stream, for {hostile['window_s']:.0f} s; then "
        f"up to {RELEASE_S:.0f} s for the server to let go. The server's bounds, shortened for a quick test: "
        f"{bounds}.\n\n"
        + "\n".join(rows)
        + f"\n\nReaders cut, reconnecting with Last-Event-ID, got first: {reconnects or 'none measured'} (a snapshot "
        "when the id is older than the replay ring). A stalled reader is let go at the latest once the kernel's "
        "buffers for it are full (up to ~2.8 MB on Linux for a 4 KiB receive buffer: how long that takes depends on "
        "the stream's rate), then within stream_queue_seconds + 1 s; a slow head or body within its timeout + 1 s.\n\n"
        + "\n".join(timeline)
    )
