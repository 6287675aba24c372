"""The JobStore calls that do a request's or a drain batch's work in one round trip (issue #13), as a reusable pytest
class every store adapter runs: `submit` (idempotency keys, the per-user submit bucket, the cap on unfinished jobs),
`claim_many` and `record_launches`, and the owner-scoped reads `list_owned_events` and `list_owned_metrics`.

Subclass it with a `store` fixture giving a fresh, empty store (as JobStoreContract). The bucket is driven by the
`now` each request carries, so no test waits for a clock.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from robotrain.jobs.claims import Capped, CapScope, Claimed, LaunchRecord, Missing, NotQueued
from robotrain.jobs.models import EventKind, JobStatus, MetricPoint, NewEvent, utcnow
from robotrain.jobs.submission import (
    Created,
    KeyReused,
    OverActiveCap,
    Replayed,
    SubmitRateLimited,
    SubmitRequest,
)
from robotrain.ports import JobStore
from tests.robotrain.adapters.store_contract import at, make_job

S = JobStatus
UNFINISHED = frozenset({S.QUEUED, S.STARTING, S.RUNNING})
QUEUED_EVENT = NewEvent(EventKind.STATUS, "queued", {"status": "queued"})
CLAIM_EVENT = NewEvent(EventKind.STATUS, "starting", {"status": "starting", "from": "queued"})


def request(
    user_id: str = "user_alice",
    *,
    now: datetime | None = None,
    rate: int = 30,
    cap: int = 10,
    key: str | None = None,
    body: str = "hash-a",
    job_id: str | None = None,
) -> SubmitRequest:
    when = now or at(0)
    job = make_job(user_id, created_at=when, job_id=job_id).model_copy(update={"enqueued_at": when})
    return SubmitRequest(
        job=job,
        event=QUEUED_EVENT,
        now=when,
        rate_per_minute=rate,
        max_unfinished=cap,
        unfinished_statuses=UNFINISHED,
        idempotency_key=key,
        request_hash=body if key is not None else None,
    )


def created(outcome: Any) -> Any:
    assert isinstance(outcome, Created), outcome
    return outcome.job


def in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """`work(i)` in `count` threads released together; the results (or the exceptions) by index."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except Exception as error:  # the caller's assertion reports it
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


class OneRoundTripContract:
    @pytest.fixture
    def store(self) -> JobStore:
        """A fresh, empty store. Subclasses must override this."""
        raise NotImplementedError

    # --- submit ------------------------------------------------------------------------------------------------

    def test_submit_stores_the_job_with_its_first_event(self, store: JobStore) -> None:
        asked = request()
        job = created(store.submit(asked))
        assert job == asked.job == store.get(job.id)
        [event] = store.list_events(job.id)
        assert (event.kind, event.message, event.data) == ("status", "queued", {"status": "queued"})

    def test_a_repeated_call_answers_created_with_the_same_job_and_charges_nothing(self, store: JobStore) -> None:
        # the answer to the first call was lost and the adapter sent it again
        first = request(rate=1)
        job = created(store.submit(first))
        assert created(store.submit(first)) == job
        assert [j.id for j in store.list_jobs(user_id="user_alice").data] == [job.id]
        assert len(store.list_events(job.id)) == 1

    def test_a_key_replays_its_job_and_refuses_another_body(self, store: JobStore) -> None:
        first = created(store.submit(request(key="k1")))
        replay = store.submit(request(key="k1", now=at(1)))
        assert isinstance(replay, Replayed) and replay.job == first
        assert isinstance(store.submit(request(key="k1", body="hash-b", now=at(2))), KeyReused)
        assert created(store.submit(request("user_bob", key="k1"))).user_id == "user_bob"  # keys are per user
        assert len(store.list_jobs(user_id="user_alice").data) == 1

    def test_a_replay_answers_even_at_the_cap_and_with_an_empty_bucket(self, store: JobStore) -> None:
        first = created(store.submit(request(key="k1", rate=1, cap=1)))
        assert store.submit(request(key="k1", rate=1, cap=1)) == Replayed(first)
        assert isinstance(store.submit(request(key="k2", rate=1, cap=1)), SubmitRateLimited)
        assert isinstance(store.submit(request(key="k2", rate=1, cap=1, now=at(60))), OverActiveCap)

    def test_a_refused_submit_writes_nothing(self, store: JobStore) -> None:
        store.create(make_job(status=S.RUNNING))
        refused = store.submit(request(key="k1", cap=1, rate=1))
        assert refused == OverActiveCap(unfinished=1)
        assert store.count(statuses=UNFINISHED) == 1
        # no key was left behind, and the one token of the bucket was not spent: the same key works once there is room
        job = created(store.submit(request(key="k1", cap=2, rate=1)))
        assert store.submit(request(key="k1", cap=2, rate=1)) == Replayed(job)

    def test_the_cap_counts_unfinished_jobs_of_that_user_only(self, store: JobStore) -> None:
        for user, status in [("user_alice", S.QUEUED), ("user_alice", S.RUNNING), ("user_alice", S.FAILED)]:
            store.create(make_job(user, status=status))
        store.create(make_job("user_bob", status=S.STARTING))
        assert store.submit(request(cap=2)) == OverActiveCap(unfinished=2)
        created(store.submit(request(cap=3)))
        created(store.submit(request("user_bob", cap=2)))

    def test_a_full_bucket_allows_a_burst_of_the_rate_then_refuses_until_a_token_is_back(self, store: JobStore) -> None:
        for _ in range(3):
            created(store.submit(request(rate=3)))
        assert store.submit(request(rate=3)) == SubmitRateLimited(retry_after_s=20)  # one token every 60/3 s
        assert store.submit(request(rate=3, now=at(19))) == SubmitRateLimited(retry_after_s=1)
        created(store.submit(request(rate=3, now=at(20))))

    def test_tokens_come_back_at_the_per_minute_rate(self, store: JobStore) -> None:
        for _ in range(6):  # a token every 10 s
            created(store.submit(request(rate=6)))
        assert store.submit(request(rate=6, now=at(4))) == SubmitRateLimited(retry_after_s=6)
        created(store.submit(request(rate=6, now=at(10))))
        assert isinstance(store.submit(request(rate=6, now=at(10))), SubmitRateLimited)

    def test_each_user_has_their_own_bucket(self, store: JobStore) -> None:
        created(store.submit(request("user_alice", rate=1)))
        created(store.submit(request("user_bob", rate=1)))
        assert isinstance(store.submit(request("user_alice", rate=1)), SubmitRateLimited)

    def test_an_idle_user_never_holds_more_than_the_burst(self, store: JobStore) -> None:
        created(store.submit(request(rate=2)))
        for _ in range(2):
            created(store.submit(request(rate=2, now=at(3600))))
        assert isinstance(store.submit(request(rate=2, now=at(3600))), SubmitRateLimited)

    def test_a_clock_that_steps_back_refills_nothing(self, store: JobStore) -> None:
        created(store.submit(request(rate=1, now=at(100))))  # another API process's clock runs ahead
        assert store.submit(request(rate=1, now=at(70))) == SubmitRateLimited(retry_after_s=60)
        assert isinstance(store.submit(request(rate=1, now=at(130))), SubmitRateLimited)
        created(store.submit(request(rate=1, now=at(160))))

    def test_concurrent_submits_with_one_key_create_one_job(self, store: JobStore) -> None:
        outcomes = in_threads(6, lambda _: store.submit(request(key="race", now=utcnow())))
        jobs = {outcome.job.id for outcome in outcomes if isinstance(outcome, Created | Replayed)}
        assert len(jobs) == 1, outcomes
        assert sum(isinstance(outcome, Created) for outcome in outcomes) == 1
        assert len(store.list_jobs(user_id="user_alice").data) == 1

    def test_concurrent_submits_never_pass_the_cap_together(self, store: JobStore) -> None:
        outcomes = in_threads(8, lambda _: store.submit(request(cap=3, now=utcnow())))
        assert sum(isinstance(outcome, Created) for outcome in outcomes) == 3, outcomes
        assert sum(isinstance(outcome, OverActiveCap) for outcome in outcomes) == 5
        assert store.count(statuses=UNFINISHED, user_id="user_alice") == 3

    def test_forgetting_idempotency_keys_removes_only_older_ones(self, store: JobStore) -> None:
        first = created(store.submit(request(key="k1", now=utcnow())))
        assert store.forget_idempotency_keys(older_than=utcnow() - timedelta(hours=24)) == 0
        assert store.submit(request(key="k1", now=utcnow())) == Replayed(first)
        assert store.forget_idempotency_keys(older_than=utcnow() + timedelta(seconds=5)) == 1
        assert created(store.submit(request(key="k1", now=utcnow()))).id != first.id

    # --- claim_many and record_launches ------------------------------------------------------------------------

    def test_claim_many_claims_queued_jobs_in_order_within_the_caps(self, store: JobStore) -> None:
        store.create(make_job("user_carol", status=S.RUNNING))
        alice = [store.create(make_job("user_alice", created_at=at(i))) for i in range(3)]
        bob = store.create(make_job("user_bob", created_at=at(3)))
        done = store.create(make_job("user_bob", status=S.CANCELLED))
        ids = [alice[0].id, "job_missing", done.id, alice[1].id, bob.id, alice[2].id]
        batch = store.claim_many(ids, max_active=4, max_active_per_user=1, event=CLAIM_EVENT)
        assert list(batch.outcomes) == ids
        claimed = batch.outcomes[alice[0].id]
        assert isinstance(claimed, Claimed) and (claimed.job.status, claimed.job.attempt) == (S.STARTING, 1)
        assert claimed.job == store.get(alice[0].id)
        assert batch.outcomes["job_missing"] == Missing()
        assert batch.outcomes[done.id] == NotQueued(S.CANCELLED)
        assert batch.outcomes[alice[1].id] == Capped(CapScope.USER, alice[1])
        assert isinstance(batch.outcomes[bob.id], Claimed)
        assert batch.outcomes[alice[2].id] == Capped(CapScope.USER, alice[2])
        assert batch.active == 3
        [event] = store.list_events(alice[0].id)
        assert (event.message, event.data) == ("starting", {"status": "starting", "from": "queued", "attempt": 1})
        assert store.list_events(alice[1].id) == []

    def test_claim_many_stops_claiming_at_the_global_cap_and_counts_duplicates_once(self, store: JobStore) -> None:
        jobs = [store.create(make_job(f"user_{i}", created_at=at(i))) for i in range(3)]
        ids = [jobs[0].id, jobs[0].id, jobs[1].id, jobs[2].id]
        batch = store.claim_many(ids, max_active=2, max_active_per_user=5, event=CLAIM_EVENT)
        assert list(batch.outcomes) == [job.id for job in jobs]
        assert [type(outcome) for outcome in batch.outcomes.values()] == [Claimed, Claimed, Capped]
        assert batch.outcomes[jobs[2].id] == Capped(CapScope.GLOBAL, jobs[2])
        assert batch.active == 2 and store.get(jobs[0].id).attempt == 1

    def test_concurrent_batch_and_single_claims_never_exceed_the_caps(self, store: JobStore) -> None:
        # 12 queued jobs of 3 users; 4 batches of 3 and 4 single claims at once: at most 4 in all, 2 per user
        jobs = [store.create(make_job(f"user_{i % 3}")) for i in range(12)]

        def claim(index: int) -> list[Any]:
            if index < 4:
                batch = jobs[3 * index : 3 * index + 3]
                outcomes = store.claim_many(
                    [job.id for job in batch], max_active=4, max_active_per_user=2, event=CLAIM_EVENT
                ).outcomes.values()
                return [outcome.job for outcome in outcomes if isinstance(outcome, Claimed)]
            single = store.claim(jobs[index - 4].id, max_active=4, max_active_per_user=2)
            return [single] if single is not None else []

        results = in_threads(8, claim)
        assert not [r for r in results if isinstance(r, Exception)], results
        winners = [job for result in results for job in result]
        assert len(winners) == 4 == store.count(statuses={S.STARTING})
        per_user: dict[str, int] = {}
        for winner in winners:
            per_user[winner.user_id] = per_user.get(winner.user_id, 0) + 1
        assert max(per_user.values()) <= 2

    def test_record_launches_records_each_handle_still_wanted_with_its_event(self, store: JobStore) -> None:
        wanted = store.create(make_job(status=S.STARTING, attempt=1))
        cancelled = store.create(make_job(status=S.CANCELLED, attempt=1))
        newer = store.create(make_job(status=S.STARTING, attempt=2))
        launches = [
            LaunchRecord(
                job.id, 1, f"pid:{i}", NewEvent(EventKind.LOG, "worker launched for attempt 1", {"attempt": 1})
            )
            for i, job in enumerate((wanted, cancelled, newer))
        ]
        assert store.record_launches(launches, expected={S.STARTING, S.RUNNING}) == {wanted.id}
        assert store.get(wanted.id).launch_handle == "pid:0"
        assert store.get(cancelled.id).launch_handle is None and store.get(newer.id).launch_handle is None
        [event] = store.list_events(wanted.id)
        assert (event.kind, event.message, event.data) == ("log", "worker launched for attempt 1", {"attempt": 1})
        assert store.list_events(cancelled.id) == [] and store.list_events(newer.id) == []
        assert store.record_launches([], expected={S.STARTING}) == set()

    # --- owner-scoped reads ------------------------------------------------------------------------------------

    def test_owned_events_are_the_owners_only(self, store: JobStore) -> None:
        job = store.create(make_job("user_alice"))
        quiet = store.create(make_job("user_alice"))
        appended = [store.append_event(job.id, "log", f"line {i}") for i in range(4)]
        assert store.list_owned_events(job.id, user_id="user_alice") == appended
        assert store.list_owned_events(job.id, user_id="user_alice", after=appended[0].id, limit=2) == appended[1:3]
        assert store.list_owned_events(job.id, user_id="user_alice", after=appended[-1].id) == []
        assert store.list_owned_events(quiet.id, user_id="user_alice") == []
        assert store.list_owned_events(job.id, user_id="user_bob") is None
        assert store.list_owned_events("job_missing", user_id="user_alice") is None

    def test_owned_metrics_are_the_owners_only(self, store: JobStore) -> None:
        job = store.create(make_job("user_alice"))
        quiet = store.create(make_job("user_alice"))
        store.append_metrics(
            job.id,
            [
                MetricPoint(step=2, name="loss", value=0.5),
                MetricPoint(step=1, name="loss", value=math.nan),
                MetricPoint(step=1, name="lr", value=1e-4),
            ],
        )
        series = store.list_owned_metrics(job.id, user_id="user_alice")
        assert series is not None and list(series) == ["loss", "lr"]
        assert series["lr"] == [(1, 1e-4)] and series["loss"][1] == (2, 0.5)
        assert series["loss"][0][0] == 1 and math.isnan(series["loss"][0][1])
        assert store.list_owned_metrics(quiet.id, user_id="user_alice") == {}
        assert store.list_owned_metrics(job.id, user_id="user_bob") is None
        assert store.list_owned_metrics("job_missing", user_id="user_alice") is None
