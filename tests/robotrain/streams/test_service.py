"""The stream cursor's window: rows that become visible after rows with higher ids (PostgreSQL commits them out of
order) are still sent, once. The store here is an in-repo fake (a list of rows whose visibility the test controls),
because no real store here can be made to commit two inserts out of id order on demand."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from robotrain.jobs.models import EventKind, Job, JobEvent, JobStatus, utcnow
from robotrain.streams.models import JobFeed, MetricChange
from robotrain.streams.service import JobStream


@dataclass
class VisibleRows:
    job: Job
    events: list[JobEvent] = field(default_factory=list)
    metrics: list[MetricChange] = field(default_factory=list)

    def job_feed(self, job_id: str, *, user_id: str, after_event: int = 0, after_metric: int = 0, limit: int = 500):
        if user_id != self.job.user_id:
            return None
        return JobFeed(
            job=self.job,
            events=sorted((e for e in self.events if e.id > after_event), key=lambda e: e.id)[:limit],
            metrics=sorted((m for m in self.metrics if m.seq > after_metric), key=lambda m: m.seq)[:limit],
        )

    def jobs_changed(self, *, user_id: str, since: datetime, limit: int = 200) -> list[Job]:
        return []


def event(event_id: int, message: str, status: str | None = None) -> JobEvent:
    kind = EventKind.STATUS if status else EventKind.LOG
    return JobEvent(
        id=event_id, job_id="job_1", at=utcnow(), kind=kind, message=message, data={"status": status} if status else {}
    )


def job(status: JobStatus) -> Job:
    now = utcnow()
    return Job(id="job_1", user_id="alice", name="n", status=status, spec={}, created_at=now, updated_at=now)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_row_committed_after_a_higher_id_is_still_sent_once() -> None:
    rows = VisibleRows(job(JobStatus.RUNNING), events=[event(1, "one"), event(3, "three")])
    clock = Clock()
    stream = JobStream(rows, "job_1", "alice", clock=clock, settle_s=5)
    assert [m.data["message"] for m in stream.poll() if m.event == "log"] == ["one", "three"]
    rows.events.append(event(2, "two"))  # id 2 commits late
    clock.now = 1
    assert [m.data["message"] for m in stream.poll() if m.event == "log"] == ["two"]
    clock.now = 2
    assert [m for m in stream.poll() if m.event == "log"] == []
    assert stream.cursor == "3-0"


def test_the_stream_ends_after_the_final_status_event_or_after_the_window() -> None:
    rows = VisibleRows(job(JobStatus.SUCCEEDED), events=[event(1, "queued", "queued")])
    clock = Clock()
    stream = JobStream(rows, "job_1", "alice", clock=clock, settle_s=5)
    stream.poll()
    assert not stream.finished  # the job says succeeded, but its status event is not visible yet
    rows.events.append(event(2, "succeeded", "succeeded"))
    clock.now = 1
    messages = stream.poll()
    assert [m.event for m in messages] == ["status"]
    clock.now = 2
    assert [m.event for m in stream.poll()] == ["end"] and stream.finished

    lost = JobStream(VisibleRows(job(JobStatus.FAILED)), "job_1", "alice", clock=clock, settle_s=5)
    lost.poll()
    assert not lost.finished
    clock.now = 8
    assert [m.event for m in lost.poll()] == ["end"]
