"""The behaviour every JobStore adapter must show, as a reusable pytest class.

Use it by subclassing and providing a fresh, empty store:

    class TestSqliteJobStore(JobStoreContract):
        @pytest.fixture
        def store(self, tmp_path):
            return SqliteJobStore(tmp_path / "jobs.sqlite3")

The module has no `test_` prefix, so pytest collects the contract only through its subclasses.
"""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from robotrain.errors import InvalidRequest, JobConflict, JobNotFound
from robotrain.jobs.models import Job, JobChanges, JobError, JobStatus, MetricPoint, Progress, new_job_id, utcnow
from robotrain.ports import JobStore

S = JobStatus
BASE_TIME = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def make_job(
    user_id: str = "user_alice",
    *,
    created_at: datetime | None = None,
    status: JobStatus = S.QUEUED,
    job_id: str | None = None,
    attempt: int = 0,
    name: str = "push2d-mlp",
) -> Job:
    created = created_at or utcnow()
    return Job(
        id=job_id or new_job_id(),
        user_id=user_id,
        name=name,
        status=status,
        spec={"policy": {"type": "mlp", "hidden": [64, 64]}, "dataset": {"repo_id": "local/push2d"}, "steps": 10},
        attempt=attempt,
        created_at=created,
        updated_at=created,
    )


def at(seconds: float) -> datetime:
    """A fixed point in time, `seconds` after BASE_TIME: tests that need a known order use these."""
    return BASE_TIME + timedelta(seconds=seconds)


def ids(jobs: list[Job]) -> list[str]:
    return [job.id for job in jobs]


class JobStoreContract:
    @pytest.fixture
    def store(self) -> JobStore:
        """A fresh, empty store. Subclasses must override this."""
        raise NotImplementedError

    # --- create / get ----------------------------------------------------------------------------------------

    def test_create_then_get_returns_the_same_job_with_every_field(self, store: JobStore) -> None:
        job = Job(
            id=new_job_id(),
            user_id="user_alice",
            name="résumé 机器人",
            status=S.FAILED,
            spec={
                "policy": {"type": "act", "chunk": 20, "dims": [1, 2.5, -3e-8]},
                "nested": {"deep": {"list": [{"a": None}, True, "ünï"]}},
            },
            attempt=2,
            retry_of=new_job_id(),
            created_at=at(0),
            updated_at=at(1),
            started_at=at(2),
            finished_at=at(3.000001),
            progress=Progress(step=7, total_steps=10, metrics={"loss": 0.25, "grad_norm": 1.5}),
            result={"eval": {"pc_success": 80.0}, "checkpoint": "checkpoints/last/model.safetensors"},
            error=JobError(code="training_error", message="loss became NaN at step 7"),
            launch_handle="pid:1234",
            heartbeat_at=at(2.5),
            enqueued_at=at(0.1),
        )
        created = store.create(job)
        fetched = store.get(job.id)
        assert created == job
        assert fetched == job
        for field in ("created_at", "updated_at", "started_at", "finished_at", "heartbeat_at", "enqueued_at"):
            value = getattr(fetched, field)
            assert value.utcoffset() == timedelta(0), f"{field} must be timezone-aware UTC"

    def test_create_keeps_optional_fields_empty(self, store: JobStore) -> None:
        job = make_job(created_at=at(0))
        fetched = store.get(store.create(job).id)
        assert fetched == job
        assert fetched.result is None and fetched.error is None and fetched.started_at is None
        assert fetched.progress == Progress()

    def test_create_converts_other_timezones_to_utc(self, store: JobStore) -> None:
        plus_two = timezone(timedelta(hours=2))
        job = make_job(created_at=datetime(2026, 1, 2, 5, 0, 0, 250, tzinfo=plus_two))
        fetched = store.get(store.create(job).id)
        assert fetched.created_at == datetime(2026, 1, 2, 3, 0, 0, 250, tzinfo=UTC)
        assert fetched.created_at.utcoffset() == timedelta(0)

    def test_creating_a_job_with_an_existing_id_is_a_conflict(self, store: JobStore) -> None:
        job = store.create(make_job())
        with pytest.raises(JobConflict):
            store.create(make_job(job_id=job.id, user_id="user_bob"))
        assert store.get(job.id).user_id == "user_alice"

    def test_get_returns_none_for_a_missing_job(self, store: JobStore) -> None:
        assert store.get("job_missing") is None
        assert store.get("job_missing", user_id="user_alice") is None

    def test_get_with_a_user_returns_only_that_users_job(self, store: JobStore) -> None:
        job = store.create(make_job("user_alice"))
        assert store.get(job.id, user_id="user_alice") == job
        assert store.get(job.id, user_id="user_bob") is None

    # --- list ------------------------------------------------------------------------------------------------

    def test_list_returns_only_the_users_jobs_newest_first(self, store: JobStore) -> None:
        alice = [store.create(make_job("user_alice", created_at=at(i))) for i in (3, 1, 2)]
        store.create(make_job("user_bob", created_at=at(5)))
        page = store.list_jobs(user_id="user_alice")
        assert ids(page.data) == [alice[0].id, alice[2].id, alice[1].id]
        assert page.next_cursor is None

    def test_list_breaks_created_at_ties_by_id_descending(self, store: JobStore) -> None:
        same_time = [make_job(created_at=at(0), job_id=f"job_tie_{letter}") for letter in "bca"]
        for job in same_time:
            store.create(job)
        assert ids(store.list_jobs(user_id="user_alice").data) == ["job_tie_c", "job_tie_b", "job_tie_a"]

    def test_list_of_a_user_without_jobs_is_empty(self, store: JobStore) -> None:
        store.create(make_job("user_alice"))
        page = store.list_jobs(user_id="user_nobody")
        assert page.data == [] and page.next_cursor is None

    def test_list_honours_the_limit_and_gives_a_cursor_only_when_more_remain(self, store: JobStore) -> None:
        for i in range(3):
            store.create(make_job(created_at=at(i)))
        first = store.list_jobs(user_id="user_alice", limit=2)
        assert len(first.data) == 2 and first.next_cursor is not None
        exact = store.list_jobs(user_id="user_alice", limit=3)
        assert len(exact.data) == 3 and exact.next_cursor is None

    def test_list_filters_by_status(self, store: JobStore) -> None:
        queued = store.create(make_job(created_at=at(0), status=S.QUEUED))
        running = store.create(make_job(created_at=at(1), status=S.RUNNING))
        store.create(make_job(created_at=at(2), status=S.FAILED))
        assert ids(store.list_jobs(user_id="user_alice", status=S.RUNNING).data) == [running.id]
        assert ids(store.list_jobs(user_id="user_alice", status=S.QUEUED).data) == [queued.id]
        assert store.list_jobs(user_id="user_alice", status=S.CANCELLED).data == []

    def test_cursor_pages_visit_every_job_exactly_once_in_order(self, store: JobStore) -> None:
        created = [store.create(make_job(created_at=at(i // 2))) for i in range(7)]  # pairs share a timestamp
        expected = ids(sorted(created, key=lambda job: (job.created_at, job.id), reverse=True))
        seen: list[str] = []
        cursor = None
        for _ in range(10):
            page = store.list_jobs(user_id="user_alice", limit=3, cursor=cursor)
            seen += ids(page.data)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == expected

    def test_cursor_paging_keeps_the_status_filter(self, store: JobStore) -> None:
        running = [store.create(make_job(created_at=at(i), status=S.RUNNING)) for i in range(0, 10, 2)]
        for i in range(1, 10, 2):
            store.create(make_job(created_at=at(i), status=S.QUEUED))
        first = store.list_jobs(user_id="user_alice", status=S.RUNNING, limit=3)
        second = store.list_jobs(user_id="user_alice", status=S.RUNNING, limit=3, cursor=first.next_cursor)
        assert ids(first.data) + ids(second.data) == ids(running[::-1])
        assert second.next_cursor is None

    def test_jobs_created_between_pages_do_not_shift_later_pages(self, store: JobStore) -> None:
        old = [store.create(make_job(created_at=utcnow() - timedelta(minutes=10 - i))) for i in range(6)]
        first = store.list_jobs(user_id="user_alice", limit=3)
        newcomers = [store.create(make_job()) for _ in range(3)]
        second = store.list_jobs(user_id="user_alice", limit=3, cursor=first.next_cursor)
        assert ids(first.data) + ids(second.data) == ids(old[::-1])
        assert not set(ids(second.data)) & set(ids(newcomers))
        assert second.next_cursor is None

    @pytest.mark.parametrize("cursor", ["not-a-cursor", "", "!!!", "eyJhIjoxfQ", "WzEsMl0", "WyJ4IiwieSJd"])
    def test_an_invalid_cursor_is_an_invalid_request(self, store: JobStore, cursor: str) -> None:
        # "eyJhIjoxfQ" is {"a":1}, "WzEsMl0" is [1,2], "WyJ4IiwieSJd" is ["x","y"]: valid base64, not a cursor
        store.create(make_job())
        with pytest.raises(InvalidRequest, match="invalid cursor"):
            store.list_jobs(user_id="user_alice", cursor=cursor)

    # --- compare-and-set -------------------------------------------------------------------------------------

    def test_update_applies_the_changes_when_the_status_matches(self, store: JobStore) -> None:
        job = store.create(make_job(created_at=at(0)))
        updated = store.update(
            job.id,
            JobChanges(status=S.STARTING, attempt=1, launch_handle="pid:42", started_at=at(10)),
            expected={S.QUEUED},
        )
        assert updated is not None
        assert (updated.status, updated.attempt, updated.launch_handle, updated.started_at) == (
            S.STARTING,
            1,
            "pid:42",
            at(10),
        )
        assert updated.name == job.name and updated.spec == job.spec and updated.created_at == job.created_at
        assert updated.updated_at > job.updated_at
        assert store.get(job.id) == updated

    def test_update_writes_nested_progress_result_and_error(self, store: JobStore) -> None:
        job = store.create(make_job(status=S.RUNNING))
        progress = Progress(step=5, total_steps=50, metrics={"loss": 0.5})
        result = {"eval": {"pc_success": 90.0}, "final": {"loss": 0.01}}
        updated = store.update(
            job.id,
            JobChanges(progress=progress, result=result, error=JobError(code="timeout", message="too slow")),
            expected={S.RUNNING},
        )
        assert updated.progress == progress and updated.result == result and updated.error.code == "timeout"
        assert store.get(job.id) == updated

    def test_update_leaves_unset_fields_alone_and_clears_fields_set_to_none(self, store: JobStore) -> None:
        job = store.create(make_job(status=S.QUEUED))
        store.update(job.id, JobChanges(launch_handle="pid:1", heartbeat_at=at(5)), expected={S.QUEUED})
        cleared = store.update(job.id, JobChanges(launch_handle=None), expected={S.QUEUED})
        assert cleared.launch_handle is None
        assert cleared.heartbeat_at == at(5)
        assert cleared.status == S.QUEUED

    def test_update_returns_none_and_changes_nothing_when_the_status_differs(self, store: JobStore) -> None:
        job = store.create(make_job(status=S.RUNNING))
        assert store.update(job.id, JobChanges(status=S.STARTING), expected={S.QUEUED}) is None
        assert store.update(job.id, JobChanges(status=S.STARTING), expected=set()) is None
        assert store.get(job.id) == job

    def test_update_with_an_expected_attempt_needs_that_attempt(self, store: JobStore) -> None:
        job = store.create(make_job(status=S.RUNNING, attempt=2))
        lost = store.update(job.id, JobChanges(status=S.QUEUED), expected={S.RUNNING}, expected_attempt=1)
        assert lost is None
        assert store.get(job.id) == job
        won = store.update(job.id, JobChanges(status=S.QUEUED, attempt=3), expected={S.RUNNING}, expected_attempt=2)
        assert (won.status, won.attempt) == (S.QUEUED, 3)

    def test_update_accepts_any_of_several_expected_statuses(self, store: JobStore) -> None:
        job = store.create(make_job(status=S.STARTING))
        updated = store.update(job.id, JobChanges(status=S.CANCELLED), expected={S.QUEUED, S.STARTING, S.RUNNING})
        assert updated.status == S.CANCELLED

    def test_update_of_a_missing_job_returns_none(self, store: JobStore) -> None:
        assert store.update("job_missing", JobChanges(status=S.STARTING), expected={S.QUEUED}) is None

    def test_concurrent_compare_and_set_from_threads_has_exactly_one_winner(self, store: JobStore) -> None:
        job = store.create(make_job(status=S.QUEUED))
        contenders = 8
        barrier = threading.Barrier(contenders)
        results: list[object] = [None] * contenders

        def claim(index: int) -> None:
            barrier.wait()
            try:
                results[index] = store.update(
                    job.id, JobChanges(status=S.STARTING, launch_handle=f"claimer-{index}"), expected={S.QUEUED}
                )
            except Exception as error:  # the assertion below reports it
                results[index] = error

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(contenders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        errors = [r for r in results if isinstance(r, Exception)]
        assert not errors, errors
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        assert store.get(job.id).launch_handle == winners[0].launch_handle

    # --- find / count ----------------------------------------------------------------------------------------

    def test_find_returns_jobs_of_every_user_in_the_statuses_oldest_first(self, store: JobStore) -> None:
        a = store.create(make_job("user_alice", created_at=at(2), status=S.RUNNING))
        b = store.create(make_job("user_bob", created_at=at(1), status=S.STARTING))
        store.create(make_job("user_bob", created_at=at(0), status=S.SUCCEEDED))
        c = store.create(make_job("user_carol", created_at=at(3), status=S.RUNNING))
        assert ids(store.find(statuses={S.RUNNING, S.STARTING})) == [b.id, a.id, c.id]
        assert ids(store.find(statuses={S.RUNNING, S.STARTING}, limit=2)) == [b.id, a.id]
        assert store.find(statuses={S.CANCELLED}) == []

    def test_find_can_keep_only_unsent_jobs(self, store: JobStore) -> None:
        sent = store.create(make_job(created_at=at(0)))
        store.update(sent.id, JobChanges(enqueued_at=at(1)), expected={S.QUEUED})
        unsent = store.create(make_job(created_at=at(2)))
        assert ids(store.find(statuses={S.QUEUED})) == [sent.id, unsent.id]
        assert ids(store.find(statuses={S.QUEUED}, unsent=True)) == [unsent.id]

    def test_find_can_keep_only_jobs_holding_compute(self, store: JobStore) -> None:
        released = store.create(make_job(created_at=at(0), status=S.CANCELLED))
        holding = store.create(make_job(created_at=at(1), status=S.CANCELLED))
        store.update(holding.id, JobChanges(launch_handle="pid:1:2"), expected={S.CANCELLED})
        assert ids(store.find(statuses={S.CANCELLED}, holding_compute=True)) == [holding.id]
        store.update(holding.id, JobChanges(launch_handle=None), expected={S.CANCELLED})
        assert store.find(statuses={S.CANCELLED}, holding_compute=True) == []
        assert ids(store.find(statuses={S.CANCELLED})) == [released.id, holding.id]

    # --- claim -----------------------------------------------------------------------------------------------

    def test_claim_moves_a_queued_job_to_starting_and_counts_the_attempt(self, store: JobStore) -> None:
        job = store.create(make_job(created_at=at(0), attempt=2))
        claimed = store.claim(job.id, max_active=1, max_active_per_user=1)
        assert claimed is not None
        assert (claimed.status, claimed.attempt) == (S.STARTING, 3)
        assert claimed.updated_at > job.updated_at
        assert store.get(job.id) == claimed

    def test_claim_of_a_job_that_is_not_queued_or_missing_is_none(self, store: JobStore) -> None:
        for status in (S.STARTING, S.RUNNING, S.CANCELLED, S.SUCCEEDED):
            job = store.create(make_job(status=status, attempt=1))
            assert store.claim(job.id, max_active=10, max_active_per_user=10) is None
            assert store.get(job.id).status is status and store.get(job.id).attempt == 1
        assert store.claim(new_job_id(), max_active=10, max_active_per_user=10) is None

    def test_claim_respects_the_global_cap(self, store: JobStore) -> None:
        store.create(make_job("user_bob", status=S.RUNNING))
        store.create(make_job("user_carol", status=S.STARTING))
        job = store.create(make_job("user_alice"))
        assert store.claim(job.id, max_active=2, max_active_per_user=5) is None
        assert store.get(job.id).status is S.QUEUED
        assert store.claim(job.id, max_active=3, max_active_per_user=5).status is S.STARTING

    def test_claim_respects_the_per_user_cap_and_ignores_other_users(self, store: JobStore) -> None:
        store.create(make_job("user_alice", status=S.RUNNING))
        store.create(make_job("user_bob", status=S.RUNNING))
        store.create(make_job("user_bob", status=S.SUCCEEDED))
        alice = store.create(make_job("user_alice"))
        bob = store.create(make_job("user_bob"))
        assert store.claim(alice.id, max_active=10, max_active_per_user=1) is None
        assert store.claim(bob.id, max_active=10, max_active_per_user=2).status is S.STARTING

    def test_concurrent_claims_never_exceed_the_caps(self, store: JobStore) -> None:
        # 12 queued jobs of 3 users, claimed by 12 threads at once: at most 4 in all and 2 per user may win.
        jobs = [store.create(make_job(f"user_{i % 3}")) for i in range(12)]
        barrier = threading.Barrier(len(jobs))
        results: list[object] = [None] * len(jobs)

        def claim(index: int) -> None:
            barrier.wait()
            try:
                results[index] = store.claim(jobs[index].id, max_active=4, max_active_per_user=2)
            except Exception as error:  # the assertion below reports it
                results[index] = error

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(jobs))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        errors = [r for r in results if isinstance(r, Exception)]
        assert not errors, errors
        winners = [r for r in results if r is not None]
        assert len(winners) == 4
        per_user: dict[str, int] = {}
        for winner in winners:
            per_user[winner.user_id] = per_user.get(winner.user_id, 0) + 1
        assert max(per_user.values()) <= 2
        assert store.count(statuses={S.STARTING}) == 4

    def test_ping_answers_when_the_store_is_reachable(self, store: JobStore) -> None:
        store.ping()

    def test_non_finite_progress_metrics_and_results_round_trip(self, store: JobStore) -> None:
        job = store.create(make_job(status=S.RUNNING))
        metrics = {"loss": float("nan"), "grad_norm": float("inf"), "low": float("-inf"), "lr": 0.5}
        updated = store.update(
            job.id,
            JobChanges(progress=Progress(step=3, total_steps=9, metrics=metrics), result={"final_loss": float("nan")}),
            expected={S.RUNNING},
        )
        for read in (updated, store.get(job.id)):
            assert read.progress.step == 3
            got = read.progress.metrics
            assert math.isnan(got["loss"]) and got["grad_norm"] == math.inf and got["low"] == -math.inf
            assert got["lr"] == 0.5
            # result is free-form JSON: a non-finite float comes back as PostgreSQL's spelling of it
            assert read.result["final_loss"] == "NaN"

    def test_count_by_status_and_optionally_by_user(self, store: JobStore) -> None:
        for user, status in [("user_alice", S.RUNNING), ("user_alice", S.QUEUED), ("user_bob", S.RUNNING)]:
            store.create(make_job(user, status=status))
        store.create(make_job("user_alice", status=S.FAILED))
        assert store.count(statuses={S.RUNNING}) == 2
        assert store.count(statuses={S.RUNNING, S.QUEUED}) == 3
        assert store.count(statuses={S.RUNNING, S.QUEUED}, user_id="user_alice") == 2
        assert store.count(statuses={S.CANCELLED}) == 0
        assert store.count(statuses={S.RUNNING}, user_id="user_nobody") == 0

    # --- events ----------------------------------------------------------------------------------------------

    def test_events_come_back_in_append_order_with_increasing_ids(self, store: JobStore) -> None:
        job = store.create(make_job())
        other = store.create(make_job())
        first = store.append_event(job.id, "status", "queued", {"status": "queued"})
        store.append_event(other.id, "log", "someone else's line")
        second = store.append_event(job.id, "log", "step 1 loss 0.5")
        third = store.append_event(job.id, "status", "running", {"nested": {"attempt": 1, "list": [1, 2]}})
        assert first.id < second.id < third.id
        assert first.job_id == job.id and first.kind == "status" and first.data == {"status": "queued"}
        assert first.at.utcoffset() == timedelta(0)
        assert second.data == {}
        events = store.list_events(job.id)
        assert events == [first, second, third]

    def test_events_after_an_id_and_with_a_limit(self, store: JobStore) -> None:
        job = store.create(make_job())
        appended = [store.append_event(job.id, "log", f"line {i}") for i in range(5)]
        assert store.list_events(job.id, after=appended[1].id) == appended[2:]
        assert store.list_events(job.id, after=appended[1].id, limit=2) == appended[2:4]
        assert store.list_events(job.id, after=appended[-1].id) == []
        assert store.list_events("job_missing") == []

    def test_appending_an_event_to_a_missing_job_raises_job_not_found(self, store: JobStore) -> None:
        with pytest.raises(JobNotFound):
            store.append_event("job_missing", "log", "nobody listens")

    # --- metrics ---------------------------------------------------------------------------------------------

    def test_metrics_are_grouped_by_name_and_ordered_by_step(self, store: JobStore) -> None:
        job = store.create(make_job())
        store.append_metrics(
            job.id, [MetricPoint(step=20, name="loss", value=0.5), MetricPoint(step=10, name="loss", value=0.9)]
        )
        store.append_metrics(
            job.id,
            [
                MetricPoint(step=5, name="loss", value=1.25),
                MetricPoint(step=10, name="lr", value=1e-4),
                MetricPoint(step=0, name="lr", value=0.0),
            ],
        )
        assert store.list_metrics(job.id) == {"loss": [(5, 1.25), (10, 0.9), (20, 0.5)], "lr": [(0, 0.0), (10, 1e-4)]}

    def test_metrics_are_kept_per_job(self, store: JobStore) -> None:
        job, other = store.create(make_job()), store.create(make_job())
        store.append_metrics(job.id, [MetricPoint(step=1, name="loss", value=1.0)])
        store.append_metrics(job.id, [])
        assert store.list_metrics(other.id) == {}
        assert store.list_metrics(job.id) == {"loss": [(1, 1.0)]}

    def test_a_metric_reported_again_for_a_step_replaces_the_value(self, store: JobStore) -> None:
        # a resumed attempt re-reports the steps after its checkpoint
        job = store.create(make_job())
        store.append_metrics(job.id, [MetricPoint(step=3, name="loss", value=0.7)])
        store.append_metrics(job.id, [MetricPoint(step=3, name="loss", value=0.6)])
        assert store.list_metrics(job.id) == {"loss": [(3, 0.6)]}
