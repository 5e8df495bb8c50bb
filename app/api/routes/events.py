import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from bnscope.api.deps import Service
from bnscope.config import JSON_INT
from bnscope.jsonenc import to_json
from bnscope.events import reset
from bnscope.stream.hub import Channel, Message, Subscriber
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
    after: Annotated[
        int | None, Query(ge=0, le=JSON_INT, description="continue after this event id (from /history)")
    ] = None,
    last_event_id: Annotated[int | None, Header(ge=0, le=JSON_INT)] = None,
):
    """Server-Sent Events of one run (bnscope.events): `model`, `status`, `control`, `scalars`,
    `metrics`, `stats`, `eval`, each with an increasing id and, in its data, the series `points` it
    adds and the run's state (`run`) when it changed. Reconnecting with `Last-Event-ID` (or `?after=`)
    replays what was missed; when that is no longer held, a `reset` event comes first: its `after`
    is the id the stream is complete from, and /history holds what came before. Comments are
    heartbeats. A client that falls too far behind is disconnected, never waited for, and resumes by
    its last id. Streams held at once are capped: past the server's cap a
    503, past a client address's own a 429, both with Retry-After."""
    run = service.get(run_id)
    resume_from = last_event_id if last_event_id is not None else after
    settings, streams = request.app.state.settings, request.app.state.streams
    address = request.client.host if request.client else ""
    refused = streams.take(address)
    if refused is not None:
        raise refused
    try:
        bounds = {"max_bytes": settings.stream_queue_bytes, "max_seconds": settings.stream_queue_seconds}
        subscriber, backlog = run.channel.subscribe(resume_from, asyncio.get_running_loop(), **bounds)
    except BaseException:
        streams.give_back(address)
        raise
    frames = _frames(run.channel, subscriber, resume_from, backlog)
    return EventStream(frames, subscriber, request.app.state.stopping, release=lambda: streams.give_back(address))


async def _frames(channel: Channel, subscriber: Subscriber, resume_from: int | None, backlog) -> AsyncIterator[bytes]:
    """The stream's bytes: the retry interval, a reset when the gap asked for is no longer held (then
    everything held), the backlog, then each event as it comes, with heartbeats."""
    try:
        yield f"retry: {RETRY_MS}\n: connected\n\n".encode()
        last_sent = resume_from or 0
        if backlog is None:  # the gap is older than what is held: the client reads /history for it
            backlog = channel.held()
            last_sent = backlog[0].id - 1 if backlog else channel.last_id
            yield Message(last_sent, "reset", to_json(reset(last_sent))).wire
        for message in backlog:
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
            if message.id > last_sent:  # not already sent with the backlog
                last_sent = message.id
                yield message.wire
    finally:
        channel.unsubscribe(subscriber)
