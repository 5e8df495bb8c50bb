"""A real client of a run's Server-Sent Events (/api/runs/{id}/events), on a thread of its own.

client = StreamClient(url, on_event)   # on_event(type, data, received): received = time.time()
client.start(); ...; client.stop()     # when the event's last line arrived, before parsing
StreamClient(url).start()              # no on_event: reads the stream and drops it (load only)
"""

import json
import threading
import time
from typing import Callable

import httpx

OnEvent = Callable[[str, dict, float], None]


class StreamClient(threading.Thread):
    def __init__(self, url: str, on_event: OnEvent | None = None):
        super().__init__(daemon=True)
        self.url, self.on_event = url, on_event
        self.connected = threading.Event()
        self._stopping = threading.Event()

    def run(self) -> None:
        with httpx.stream("GET", self.url, timeout=httpx.Timeout(10, read=60)) as response:
            self.connected.set()
            if self.on_event is None:
                for _ in response.iter_raw():
                    if self._stopping.is_set():
                        return
                return
            kind, data = "", None
            for line in response.iter_lines():
                if line:
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data = line[5:].strip()
                    continue
                received = time.time()  # the blank line that ends an event
                if data is not None:
                    self.on_event(kind, json.loads(data), received)
                kind, data = "", None
                if self._stopping.is_set():
                    return

    def stop(self) -> None:
        """Ends at the next event (or heartbeat); not waited for."""
        self._stopping.set()


def connect(urls: list[str], on_event: OnEvent | None = None) -> list[StreamClient]:
    clients = [StreamClient(url, on_event) for url in urls]
    for client in clients:
        client.start()
    for client in clients:
        client.connected.wait(30)
    return clients


def disconnect(clients: list[StreamClient]) -> None:
    for client in clients:
        client.stop()
