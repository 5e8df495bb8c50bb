import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from bnscope.api.deps import Service
from bnscope.hub import DROPPED, Message, to_json

router = APIRouter(prefix="/api/runs", tags=["events"])
RETRY_MS = 1000  # how soon a dropped or disconnected browser reconnects
HEARTBEAT_S = 15  # a comment line this often keeps proxies and browsers from timing out


STREAM = {"description": "a text/event-stream that lasts while the client stays", "content": {"text/event-stream": {}}}


@router.get("/{run_id}/events", response_class=StreamingResponse, responses={200: STREAM, 404: {"description": "no such run"}})
async def run_events(
    run_id: int,
    service: Service,
    after: Annotated[int | None, Query(ge=0, le=2**62, description="continue after this event id (from /history)")] = None,
    last_event_id: Annotated[int | None, Header(ge=0, le=2**62)] = None,
):
    """Server-Sent Events of one run: `scalars`, `stats`, `eval`, `status`, `control`, each with an
    increasing id. Reconnecting with `Last-Event-ID` (or `?after=`) replays what was missed; when
    that is no longer held, a `snapshot` event carries the whole history instead. Comments are
    sent as heartbeats. A client that falls too far behind is disconnected, never waited for."""
    run = service.get(run_id)
    resume_from = last_event_id if last_event_id is not None else after

    async def stream() -> AsyncIterator[bytes]:
        # each event is framed once, when published, and the same bytes go to every client
        sub, backlog = run.channel.subscribe(resume_from, asyncio.get_running_loop())
        try:
            yield f"retry: {RETRY_MS}\n: connected\n\n".encode()
            if backlog is None:  # the gap is older than the ring: send the history, then go on live
                snapshot = await asyncio.to_thread(service.history, run_id)
                yield Message(snapshot["last_event_id"], "snapshot", to_json(snapshot)).wire
                backlog = run.channel.since(snapshot["last_event_id"]) or []
            last_sent = resume_from or 0
            for message in backlog:
                last_sent = message.id
                yield message.wire
            while True:  # ends when the client goes (the response is cancelled) or is dropped
                try:
                    message = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    yield b": ping\n\n"
                    continue
                if message is DROPPED:
                    return  # too slow: the browser reconnects with Last-Event-ID and catches up
                if message.id > last_sent:  # not already sent from the backlog
                    last_sent = message.id
                    yield message.wire
        finally:
            run.channel.unsubscribe(sub)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
