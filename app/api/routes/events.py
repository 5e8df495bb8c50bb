import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from bnscope.api.deps import Service
from bnscope.config import JSON_INT
from bnscope.jsonenc import to_json
from bnscope.stream.hub import Message
from bnscope.stream.sse import EventStream

router = APIRouter(prefix="/api/runs", tags=["events"])
RETRY_MS = 1000  # how soon a dropped or disconnected browser reconnects
HEARTBEAT_S = 15  # a comment line this often keeps proxies and browsers from timing out
STREAM = {"description": "a text/event-stream that lasts while the client stays", "content": {"text/event-stream": {}}}
RESPONSES = {
    200: STREAM,
    404: {"description": "no such run"},
    429: {"description": "this client address holds its most streams at once (Retry-After)"},
    503: {"description": "the server holds its most streams at once (Retry-After)"},
}


@router.get("/{run_id}/events", response_class=StreamingResponse, responses=RESPONSES)
async def run_events(
    run_id: int,
    request: Request,
    service: Service,
    after: Annotated[int | None, Query(ge=0, le=JSON_INT, description="continue after this event id (from /history)")] = None,
    last_event_id: Annotated[int | None, Header(ge=0, le=JSON_INT)] = None,
):
    """Server-Sent Events of one run (bnscope.events): `model`, `status`, `control`, `scalars`,
    `metrics`, `stats`, `eval`, each with an increasing id and, in its data, the series `points` it
    adds and the run's state (`run`) when it changed. Reconnecting with `Last-Event-ID` (or `?after=`)
    replays what was missed; when that is no longer held, a `snapshot` event (a /history answer)
    comes first. Comments are heartbeats. A client that falls too far behind is disconnected, never
    waited for, and resumes by its last id. Streams held at once are capped: past the server's cap a
    503, past a client address's own a 429, both with Retry-After."""
    run = service.get(run_id)
    resume_from = last_event_id if last_event_id is not None else after
    settings, streams = request.app.state.settings, request.app.state.streams
    address = request.client.host if request.client else ""
    refused = streams.take(address)
    if refused is not None:
        raise refused
    try:
        snapshot = None
        if resume_from is not None and run.channel.since(resume_from) is None:
            # the gap is older than what is held: the history first, then subscribe after it (subscribed
            # before, events would queue while it is read, and a slow read would drop the client)
            snapshot = await asyncio.to_thread(service.history, run_id)
            resume_from = snapshot["last_event_id"]
        bounds = {"max_bytes": settings.stream_queue_bytes, "max_seconds": settings.stream_queue_seconds}
        subscriber, backlog = run.channel.subscribe(resume_from, asyncio.get_running_loop(), **bounds)
    except BaseException:
        streams.give_back(address)
        raise

    async def frames() -> AsyncIterator[bytes]:
        try:
            yield f"retry: {RETRY_MS}\n: connected\n\n".encode()
            last_sent = resume_from or 0
            if snapshot is not None:
                yield Message(last_sent, "snapshot", to_json(snapshot)).wire
            for message in backlog or []:  # none when even the history's last event has left the ring
                if message.id > last_sent:
                    last_sent = message.id
                    yield message.wire
            while True:
                try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that races a result
                    async with asyncio.timeout(HEARTBEAT_S):
                        message = await subscriber.next()
                except TimeoutError:
                    yield b": ping\n\n"
                    continue
                if message.id > last_sent:  # not already sent with the backlog or the snapshot
                    last_sent = message.id
                    yield message.wire
        finally:
            run.channel.unsubscribe(subscriber)

    return EventStream(frames(), subscriber, request.app.state.stopping, release=lambda: streams.give_back(address))
