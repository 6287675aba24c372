"""The live streams, as sequences of polls: each poll is one store round trip (StreamStore) that turns what was
written since the cursor into messages. The HTTP layer (robotrain.api.streams) sends them as server-sent events.

Cursors are ids the store hands out in increasing order (event ids, metric seqs) or a row's updated_at. On
PostgreSQL an id is taken when a row is inserted but becomes visible when its transaction commits, so a row can
appear after a row with a higher id. A stream therefore re-reads a short window behind its newest row (`settle_s`)
and drops what it already sent: a row is missed only if it took longer than that window to commit."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Iterable
from datetime import datetime, timedelta
from typing import Any

from robotrain.errors import InvalidRequest, JobNotFound
from robotrain.jobs.cursor import decode_cursor, encode_cursor
from robotrain.jobs.models import Job, JobEvent, utcnow
from robotrain.jobs.public import public_job
from robotrain.ports import StreamStore
from robotrain.streams.models import JobFeed, MetricChange, StreamMessage

# A row first seen this long ago is taken to have every row with a lower id committed before it.
SETTLE_S = 5.0
FEED_LIMIT = 500
LIST_LIMIT = 200


def json_safe(value: Any) -> Any:
    """Non-finite floats as null: JSON has no NaN, and browsers refuse the bare `NaN` Python would write."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def event_json(event: JobEvent) -> dict[str, Any]:
    """An event as GET /jobs/{id}/events shows it."""
    return json_safe(
        {
            "id": event.id,
            "at": event.at.isoformat(),
            "kind": str(event.kind),
            "message": event.message,
            "data": event.data,
        }
    )


class _IdWindow:
    """A cursor over increasing ids that tolerates out-of-order commits: `low` is the id below which everything is
    taken as seen; ids above it that were sent are remembered until they settle."""

    def __init__(self, low: int, clock: Callable[[], float], settle_s: float):
        self.low = low
        self._sent: dict[int, float] = {}  # id -> when first seen
        self._clock = clock
        self._settle_s = settle_s

    @property
    def high(self) -> int:
        """The newest id sent (what a client resumes after)."""
        return max(self._sent, default=self.low)

    def fresh(self, ids: Iterable[int]) -> set[int]:
        now = self._clock()
        new = {i for i in ids if i > self.low and i not in self._sent}
        for i in new:
            self._sent[i] = now
        return new

    def settle(self) -> None:
        now = self._clock()
        settled = [i for i, seen in self._sent.items() if now - seen >= self._settle_s]
        if settled:
            self.low = max(self.low, max(settled))
            self._sent = {i: seen for i, seen in self._sent.items() if i > self.low}


def parse_feed_cursor(value: str | None) -> tuple[int, int]:
    """A job stream's Last-Event-ID, `<event id>-<metric seq>`; (0, 0) when absent."""
    if not value:
        return 0, 0
    try:
        event, metric = value.split("-", 1)
        after_event, after_metric = int(event), int(metric)
    except ValueError:
        raise InvalidRequest("Last-Event-ID is not a cursor this stream sent") from None
    if after_event < 0 or after_metric < 0:
        raise InvalidRequest("Last-Event-ID is not a cursor this stream sent")
    return after_event, after_metric


def _job_signature(job: Job) -> Hashable:
    """What makes a job worth sending again (heartbeats alone bump updated_at and are not)."""
    return (
        job.status,
        job.attempt,
        job.progress.step,
        job.progress.total_steps,
        job.finished_at,
        job.result is None,
        job.error,
    )


class JobStream:
    """One job's status changes, log lines, metric points and snapshots, until it has ended."""

    def __init__(
        self,
        store: StreamStore,
        job_id: str,
        user_id: str,
        *,
        last_event_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        settle_s: float = SETTLE_S,
        limit: int = FEED_LIMIT,
    ):
        after_event, after_metric = parse_feed_cursor(last_event_id)
        self._store = store
        self.job_id = job_id
        self._user_id = user_id
        self._events = _IdWindow(after_event, clock, settle_s)
        self._metrics = _IdWindow(after_metric, clock, settle_s)
        self._clock = clock
        self._settle_s = settle_s
        self._limit = limit
        self._last_job: Hashable = None
        self._terminal_since: float | None = None
        self._saw_final_status = False
        self.finished = False
        self.resumed = last_event_id is not None
        self.behind = False  # the last poll filled a page: more is waiting, poll again without pausing

    @property
    def cursor(self) -> str:
        return f"{self._events.high}-{self._metrics.high}"

    def poll(self) -> list[StreamMessage]:
        """One round trip: the messages for what changed since the last poll; the last one is `end` when the job
        has ended and everything it wrote has been sent. Raises JobNotFound when the job is not the user's."""
        feed = self._store.job_feed(
            self.job_id,
            user_id=self._user_id,
            after_event=self._events.low,
            after_metric=self._metrics.low,
            limit=self._limit,
        )
        if feed is None:
            raise JobNotFound(self.job_id)
        self.behind = len(feed.events) >= self._limit or len(feed.metrics) >= self._limit
        messages = self._event_messages(feed) + self._metric_messages(feed.metrics)
        wrote = bool(messages)
        signature = _job_signature(feed.job)
        if signature != self._last_job:
            self._last_job = signature
            messages.append(StreamMessage("job", json_safe(public_job(feed.job)), self.cursor))
        self._events.settle()
        self._metrics.settle()
        if self._ended(feed.job, wrote):
            self.finished = True
            messages.append(StreamMessage("end", {"status": feed.job.status.value}, self.cursor))
        return messages

    def _event_messages(self, feed: JobFeed) -> list[StreamMessage]:
        fresh = self._events.fresh(event.id for event in feed.events)
        messages = []
        metric_cursor = self._metrics.high
        for event in feed.events:
            if event.id not in fresh:
                continue
            if event.data.get("status") == feed.job.status.value and feed.job.status.is_terminal:
                self._saw_final_status = True
            messages.append(StreamMessage(str(event.kind), event_json(event), f"{event.id}-{metric_cursor}"))
        return messages

    def _metric_messages(self, changes: list[MetricChange]) -> list[StreamMessage]:
        fresh = self._metrics.fresh(change.seq for change in changes)
        series: dict[str, list[list[Any]]] = {}
        for change in changes:
            if change.seq in fresh:
                series.setdefault(change.name, []).append([change.step, json_safe(change.value)])
        if not series:
            return []
        for points in series.values():
            points.sort(key=lambda point: point[0])
        return [StreamMessage("metrics", {"series": series}, self.cursor)]

    def _ended(self, job: Job, wrote: bool) -> bool:
        """Terminal, its final status event sent (the lifecycle records it just after the change; a job whose
        event never came is let go after `settle_s`), and nothing new in this poll."""
        if not job.status.is_terminal:
            return False
        now = self._clock()
        if self._terminal_since is None:
            self._terminal_since = now
            # A client resuming after the end: its cursor is past the final status event, which it already has.
            self._saw_final_status = self._saw_final_status or (self.resumed and not wrote)
        return not wrote and (self._saw_final_status or now - self._terminal_since >= self._settle_s)


class JobListStream:
    """A user's job changes (status, progress, result), newest state of each, as they land."""

    def __init__(
        self,
        store: StreamStore,
        user_id: str,
        *,
        last_event_id: str | None = None,
        now: Callable[[], datetime] = utcnow,
        clock: Callable[[], float] = time.monotonic,
        settle_s: float = SETTLE_S,
        limit: int = LIST_LIMIT,
    ):
        self._store = store
        self._user_id = user_id
        self._clock = clock
        self._settle_s = settle_s
        self._limit = limit
        if last_event_id:
            self._low, _ = decode_cursor(last_event_id)
        else:
            # From now on (less the window, for writers whose clocks run a little behind this one).
            self._low = now() - timedelta(seconds=settle_s)
        self._sent: dict[str, Hashable] = {}
        self._seen: dict[tuple[str, datetime], float] = {}
        self.cursor: str | None = last_event_id

    def poll(self) -> list[StreamMessage]:
        jobs = self._store.jobs_changed(user_id=self._user_id, since=self._low, limit=self._limit)
        now = self._clock()
        messages = []
        for job in jobs:
            self._seen.setdefault((job.id, job.updated_at), now)
            signature = _job_signature(job)
            if self._sent.get(job.id) != signature:
                self._sent[job.id] = signature
                self.cursor = encode_cursor(job.updated_at, job.id)
                messages.append(StreamMessage("job", json_safe(public_job(job)), self.cursor))
        settled = [at for (_, at), seen in self._seen.items() if now - seen >= self._settle_s]
        if len(jobs) >= self._limit:
            settled.append(jobs[-1].updated_at)  # a full page: move on past it
        if settled:
            self._low = max(self._low, max(settled))
            self._seen = {key: seen for key, seen in self._seen.items() if key[1] >= self._low}
        return messages
