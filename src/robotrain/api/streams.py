"""Server-sent event streams at the JSON routes' own paths: `GET /jobs/{id}/events` and `GET /jobs` answer with a
stream when the request accepts `text/event-stream` (routes of EventStreamRoute match only then, so the JSON routes
answer everything else).

Each stream polls the store (robotrain.streams.service: one round trip per poll, every stream_poll_interval_s), so
any API process can serve any stream and a client that reconnects to another process resumes from its
`Last-Event-ID`. A keep-alive comment goes out every stream_keepalive_s; a job's stream ends with an `end` event
once the job has ended and all it wrote was sent; any stream ends after stream_max_s (clients reconnect with
Last-Event-ID). A reconnect to a job that has ended, with nothing new, answers 204 (EventSource stops there)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match
from starlette.types import Scope

from robotrain.api.deps import CurrentUser, SettingsDep
from robotrain.errors import ServiceUnavailable, StoreUnavailable
from robotrain.ports import StreamStore
from robotrain.settings import Settings
from robotrain.streams.models import StreamMessage
from robotrain.streams.service import JobListStream, JobStream

log = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"
RECONNECT_MS = 2000  # the `retry:` a client waits before reconnecting after a drop


def wants_event_stream(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"accept":
            return EVENT_STREAM in value.decode("latin-1").lower()
    return False


class EventStreamRoute(APIRoute):
    """Matches only requests that accept text/event-stream."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and not wants_event_stream(scope):
            return Match.NONE, {}
        return super().matches(scope)


streams_router = APIRouter(route_class=EventStreamRoute, tags=["streams"])
LastEventId = Annotated[str | None, Header(alias="Last-Event-ID", max_length=200)]


def _stream_store(request: Request) -> StreamStore:
    store = request.app.state.components.streams
    if store is None:
        raise ServiceUnavailable("live streams are not configured on this server")
    return store


def _sse(message: StreamMessage) -> ServerSentEvent:
    return ServerSentEvent(json.dumps(message.data, separators=(",", ":")), event=message.event, id=message.id)


async def _run(
    first: list[StreamMessage],
    poll: Callable[[], list[StreamMessage]],
    done: Callable[[], bool],
    settings: Settings,
    behind: Callable[[], bool] = lambda: False,
) -> AsyncIterator[ServerSentEvent]:
    yield ServerSentEvent(comment="robotrain", retry=RECONNECT_MS)
    for message in first:
        yield _sse(message)
    deadline = time.monotonic() + settings.stream_max_s
    while not done() and time.monotonic() < deadline:
        # a long history is sent page after page; live updates wait for the next poll
        await anyio.sleep(0 if behind() else settings.stream_poll_interval_s)
        try:
            messages = await run_in_threadpool(poll)
        except StoreUnavailable as exc:  # a blip: the next poll reads from the same cursor
            log.warning("event stream: the store is unavailable: %s", exc.message)
            continue
        for message in messages:
            yield _sse(message)


def _response(events: AsyncIterator[ServerSentEvent], settings: Settings) -> EventSourceResponse:
    # X-Accel-Buffering: proxies that buffer (nginx) would hold the events back
    return EventSourceResponse(events, ping=settings.stream_keepalive_s, headers={"X-Accel-Buffering": "no"})


@streams_router.get("/jobs/{job_id}/events", include_in_schema=False)
async def job_event_stream(
    job_id: str, request: Request, user: CurrentUser, settings: SettingsDep, last_event_id: LastEventId = None
) -> Response:
    """The job's status changes (`status`), log lines (`log`), metric points (`metrics`, {"series": {name:
    [[step, value], ...]}}) and snapshots (`job`), then `end` once it has ended."""
    stream = JobStream(_stream_store(request), job_id, user, last_event_id=last_event_id)
    first = await run_in_threadpool(stream.poll)  # 404 for a job that is not the user's, before any byte is sent
    if stream.finished and stream.resumed and all(m.event in ("job", "end") for m in first):
        return Response(status_code=204)
    events = _run(first, stream.poll, lambda: stream.finished, settings, behind=lambda: stream.behind)
    return _response(events, settings)


@streams_router.get("/jobs", include_in_schema=False)
@streams_router.get("/jobs/", include_in_schema=False)
async def job_list_stream(
    request: Request, user: CurrentUser, settings: SettingsDep, last_event_id: LastEventId = None
) -> Response:
    """The user's jobs as they change (`job` events with the job), from now or from Last-Event-ID."""
    stream = JobListStream(_stream_store(request), user, last_event_id=last_event_id)
    first = await run_in_threadpool(stream.poll)
    return _response(_run(first, stream.poll, lambda: False, settings), settings)
