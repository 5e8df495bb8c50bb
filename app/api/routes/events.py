import asyncio
from collections.abc import AsyncIterable
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from app.api.deps import Service
from app.hub import DROPPED, to_json

router = APIRouter(prefix="/api/runs", tags=["events"])
RETRY_MS = 1000  # how soon a dropped or disconnected browser reconnects


@router.get("/{run_id}/events", response_class=EventSourceResponse, responses={404: {"description": "no such run"}})
async def run_events(
    run_id: int,
    service: Service,
    after: Annotated[int | None, Query(ge=0, le=2**62, description="continue after this event id (from /history)")] = None,
    last_event_id: Annotated[int | None, Header(ge=0, le=2**62)] = None,
) -> AsyncIterable[ServerSentEvent]:
    """Server-Sent Events of one run: `scalars`, `stats`, `eval`, `status`, `control`, each with an
    increasing id. Reconnecting with `Last-Event-ID` (or `?after=`) replays what was missed; when
    that is no longer held, a `snapshot` event carries the whole history instead. Comments are
    sent as heartbeats. A client that falls too far behind is disconnected, never waited for."""
    run = service.get(run_id)
    resume_from = last_event_id if last_event_id is not None else after
    sub, backlog = run.channel.subscribe(resume_from, asyncio.get_running_loop())
    try:
        yield ServerSentEvent(comment="connected", retry=RETRY_MS)
        if backlog is None:  # the gap is older than the ring: send the history, then go on live
            snapshot = await asyncio.to_thread(service.history, run_id, 2000, 500)
            yield ServerSentEvent(raw_data=to_json(snapshot), event="snapshot", id=str(snapshot["last_event_id"]))
            backlog = run.channel.since(snapshot["last_event_id"]) or []
        last_sent = resume_from or 0
        for message in backlog:
            last_sent = message.id
            yield ServerSentEvent(raw_data=message.data, event=message.type, id=str(message.id))
        while True:  # ends when the client goes (the task is cancelled) or is dropped
            message = await sub.queue.get()
            if message is DROPPED:
                return  # too slow: the browser reconnects with Last-Event-ID and catches up
            if message.id <= last_sent:
                continue  # already sent from the backlog
            last_sent = message.id
            yield ServerSentEvent(raw_data=message.data, event=message.type, id=str(message.id))
    finally:
        run.channel.unsubscribe(sub)
