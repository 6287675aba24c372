"""The behaviour every StreamStore adapter must show, as a reusable pytest class. A subclass provides `stores`: an
empty JobStore (to write with) and the StreamStore over the same data."""

from __future__ import annotations

import math

import pytest

from robotrain.jobs.models import EventKind, JobChanges, JobStatus, MetricPoint, utcnow
from robotrain.ports import JobStore, StreamStore
from tests.robotrain.adapters.store_contract import at, make_job


class StreamStoreContract:
    @pytest.fixture
    def stores(self) -> tuple[JobStore, StreamStore]:
        raise NotImplementedError

    def test_a_feed_is_the_owners_job_with_what_was_written_after_the_cursors(self, stores) -> None:
        jobs, streams = stores
        job = jobs.create(make_job("alice"))
        first = jobs.append_event(job.id, EventKind.STATUS, "queued", {"status": "queued"})
        second = jobs.append_event(job.id, EventKind.LOG, "hello", {})
        jobs.append_metrics(job.id, [MetricPoint(step=5, name="train/loss", value=0.5)])

        feed = streams.job_feed(job.id, user_id="alice")
        assert feed is not None and feed.job.id == job.id and feed.job.status is JobStatus.QUEUED
        assert [e.id for e in feed.events] == [first.id, second.id]
        assert [(m.name, m.step, m.value) for m in feed.metrics] == [("train/loss", 5, 0.5)]

        later = streams.job_feed(job.id, user_id="alice", after_event=first.id, after_metric=feed.metrics[-1].seq)
        assert later is not None and [e.message for e in later.events] == ["hello"] and later.metrics == []
        assert streams.job_feed(job.id, user_id="bob") is None
        assert streams.job_feed("job_missing", user_id="alice") is None

    def test_metric_seqs_increase_and_a_rewritten_step_comes_again_with_its_new_value(self, stores) -> None:
        jobs, streams = stores
        job = jobs.create(make_job("alice"))
        jobs.append_metrics(job.id, [MetricPoint(step=s, name="train/loss", value=1.0 / s) for s in (1, 2, 3)])
        feed = streams.job_feed(job.id, user_id="alice")
        assert feed is not None
        seqs = [m.seq for m in feed.metrics]
        assert seqs == sorted(seqs) and len(set(seqs)) == 3
        # a resumed attempt reports step 2 again, and a diverged loss
        jobs.append_metrics(job.id, [MetricPoint(step=2, name="train/loss", value=0.25)])
        jobs.append_metrics(job.id, [MetricPoint(step=4, name="train/loss", value=math.nan)])
        again = streams.job_feed(job.id, user_id="alice", after_metric=seqs[-1])
        assert again is not None
        assert [(m.step, m.value) for m in again.metrics][0] == (2, 0.25)
        assert again.metrics[-1].step == 4 and math.isnan(again.metrics[-1].value)

    def test_a_feed_is_limited_and_ordered(self, stores) -> None:
        jobs, streams = stores
        job = jobs.create(make_job("alice"))
        for i in range(5):
            jobs.append_event(job.id, EventKind.LOG, f"line {i}", {})
        feed = streams.job_feed(job.id, user_id="alice", limit=3)
        assert feed is not None and [e.message for e in feed.events] == ["line 0", "line 1", "line 2"]

    def test_jobs_changed_are_the_users_jobs_updated_since(self, stores) -> None:
        jobs, streams = stores
        old = jobs.create(make_job("alice", created_at=at(0)))
        mine = jobs.create(make_job("alice", created_at=at(1)))
        jobs.create(make_job("bob"))
        since = utcnow()
        moved = jobs.update(mine.id, JobChanges(status=JobStatus.CANCELLED), expected={JobStatus.QUEUED})
        assert moved is not None
        changed = streams.jobs_changed(user_id="alice", since=since)
        assert [j.id for j in changed] == [mine.id] and changed[0].status is JobStatus.CANCELLED
        everything = streams.jobs_changed(user_id="alice", since=at(-1))
        assert {j.id for j in everything} == {old.id, mine.id}
        assert [j.updated_at for j in everything] == sorted(j.updated_at for j in everything)
