from __future__ import annotations

from pathlib import Path

import pytest

from robotrain.errors import (
    ArtifactNotFound,
    IdempotencyConflict,
    JobConflict,
    JobNotFound,
    QueueUnavailable,
    RateLimited,
    StoreUnavailable,
)
from robotrain.jobs.lifecycle import apply_transition
from robotrain.jobs.models import JobChanges, JobError, JobStatus, Progress
from robotrain.jobs.schemas import StatusUpdate
from robotrain.jobs.service import JobService
from robotrain.ports import Components
from tests.support.components import FakeLauncher, fast_spec, make_components

S = JobStatus


@pytest.fixture
def components(tmp_path: Path) -> Components:
    return make_components(tmp_path)


@pytest.fixture
def kicks() -> list[str]:
    return []


@pytest.fixture
def service(components: Components, kicks: list[str]) -> JobService:
    return JobService(components, kick=kicks.append)


def messages(components: Components) -> list[str]:
    return [m.body for m in components.queue.receive(max_messages=10, visibility_timeout=0)]


def test_submit_stores_a_queued_job_sends_its_message_and_kicks(service, components, kicks) -> None:
    job = service.submit("alice", fast_spec())
    assert job.id.startswith("job_") and len(job.id) == 30
    assert (job.status, job.attempt, job.user_id, job.name) == (S.QUEUED, 0, "alice", "tiny")
    assert job.enqueued_at is not None
    assert job.spec == fast_spec().model_dump(mode="json")
    assert messages(components) == [f'{{"job_id": "{job.id}"}}']
    assert kicks == [job.id]  # the control plane is woken for this job
    assert [e.message for e in service.events("alice", job.id)] == ["queued"]


def test_a_job_without_a_name_gets_one_from_its_policy_and_dataset(service) -> None:
    job = service.submit("alice", fast_spec(name=""))
    assert job.name == "mlp on builtin://push2d"


class DownQueue:
    def __init__(self, queue):
        self._queue = queue

    def send(self, body: str) -> str:
        raise QueueUnavailable("queue down")

    def __getattr__(self, name):
        return getattr(self._queue, name)


def test_submit_accepts_the_job_when_the_queue_is_down_and_leaves_it_for_the_sweep(components) -> None:
    real_queue = components.queue
    components.queue = DownQueue(real_queue)
    job = JobService(components).submit("alice", fast_spec())
    assert job.status is S.QUEUED and job.enqueued_at is None
    assert components.store.get(job.id).enqueued_at is None
    assert real_queue.receive(max_messages=10) == []


def test_when_the_queue_and_then_the_store_fail_the_job_keeps_its_stamp_for_the_resend_pass(components) -> None:
    class StoreDownOnUpdate:  # the store answered the submit, then went down before the stamp could be withdrawn
        def __init__(self, store):
            self._store = store

        def update(self, *args, **kwargs):
            raise StoreUnavailable("store down")

        def __getattr__(self, name):
            return getattr(self._store, name)

    real_store = components.store
    components.queue = DownQueue(components.queue)
    components.store = StoreDownOnUpdate(real_store)
    job = JobService(components).submit("alice", fast_spec())
    assert job.status is S.QUEUED and job.enqueued_at is not None
    assert real_store.get(job.id).enqueued_at == job.enqueued_at  # the sweep resends it after resend_after


def test_a_successful_submit_writes_the_store_once(components) -> None:
    class CountingStore:
        def __init__(self, store):
            self._store = store
            self.calls: list[str] = []

        def __getattr__(self, name):
            self.calls.append(name)
            return getattr(self._store, name)

    components.store = counting = CountingStore(components.store)
    JobService(components).submit("alice", fast_spec(), idempotency_key="k1")
    assert counting.calls == ["submit"]


def test_get_hides_other_users_jobs_exactly_like_missing_ones(service) -> None:
    job = service.submit("alice", fast_spec())
    assert service.get("alice", job.id).id == job.id
    for user, job_id in (("bob", job.id), ("alice", "job_00000000000000000000000000")):
        with pytest.raises(JobNotFound):
            service.get(user, job_id)
        with pytest.raises(JobNotFound):
            service.cancel(user, job_id)
        with pytest.raises(JobNotFound):
            service.events(user, job_id)
        with pytest.raises(JobNotFound):
            service.metrics(user, job_id)
        with pytest.raises(JobNotFound):
            service.artifacts(user, job_id)


def test_list_is_per_user_newest_first_with_status_filter_and_cursor(service) -> None:
    first = service.submit("alice", fast_spec())
    second = service.submit("alice", fast_spec())
    service.submit("bob", fast_spec())
    service.cancel("alice", first.id)
    page = service.list_jobs("alice", limit=1)
    assert [j.id for j in page.data] == [second.id] and page.next_cursor
    rest = service.list_jobs("alice", limit=1, cursor=page.next_cursor)
    assert [j.id for j in rest.data] == [first.id]
    assert [j.id for j in service.list_jobs("alice", status=S.CANCELLED).data] == [first.id]


def test_cancelling_a_queued_job_is_immediate_and_a_second_cancel_is_409(service) -> None:
    job = service.submit("alice", fast_spec())
    cancelled = service.cancel("alice", job.id)
    assert cancelled.status is S.CANCELLED and cancelled.finished_at is not None
    with pytest.raises(JobConflict):
        service.cancel("alice", job.id)


@pytest.mark.parametrize("status", [S.STARTING, S.RUNNING])
def test_cancelling_an_active_job_stops_its_compute(components, service, status) -> None:
    launcher: FakeLauncher = components.launcher
    job = service.submit("alice", fast_spec())
    claimed = apply_transition(components.store, job, S.STARTING)
    handle = launcher.launch(claimed)
    job = components.store.update(job.id, JobChanges(launch_handle=handle), expected={S.STARTING})
    if status is S.RUNNING:
        job = apply_transition(components.store, job, S.RUNNING)
    cancelled = service.cancel("alice", job.id)
    assert cancelled.status is S.CANCELLED
    assert launcher.cancelled == [handle]


def test_retry_makes_a_new_job_with_the_same_spec_only_from_failed_or_cancelled(service, components) -> None:
    job = service.submit("alice", fast_spec())
    with pytest.raises(JobConflict):
        service.retry("alice", job.id)
    service.cancel("alice", job.id)
    retried = service.retry("alice", job.id)
    assert retried.id != job.id and retried.retry_of == job.id
    assert retried.spec == job.spec and retried.status is S.QUEUED
    with pytest.raises(JobNotFound):
        service.retry("bob", job.id)


def test_retry_of_a_succeeded_job_is_409(service, components) -> None:
    job = service.submit("alice", fast_spec())
    job = apply_transition(components.store, job, S.STARTING)
    job = apply_transition(components.store, job, S.RUNNING)
    apply_transition(components.store, job, S.SUCCEEDED, result={"eval": None})
    with pytest.raises(JobConflict):
        service.retry("alice", job.id)


def test_set_status_applies_legal_moves_and_refuses_illegal_ones(service, components) -> None:
    job = service.submit("alice", fast_spec())
    with pytest.raises(JobConflict):
        service.set_status(job.id, StatusUpdate(status=S.RUNNING))
    started = service.set_status(job.id, StatusUpdate(status=S.STARTING))
    assert started.attempt == 1
    running = service.set_status(job.id, StatusUpdate(status=S.RUNNING, progress=Progress(step=3, total_steps=9)))
    assert running.progress.step == 3 and running.started_at is not None
    failed = service.set_status(
        job.id, StatusUpdate(status=S.FAILED, error=JobError(code="training_error", message="boom"))
    )
    assert failed.error.code == "training_error" and failed.finished_at is not None
    with pytest.raises(JobConflict):
        service.set_status(job.id, StatusUpdate(status=S.SUCCEEDED))
    with pytest.raises(JobNotFound):
        service.set_status("job_00000000000000000000000000", StatusUpdate(status=S.CANCELLED))
    statuses = [e.data.get("status") for e in service.events("alice", job.id) if e.kind == "status"]
    assert statuses == ["queued", "starting", "running", "failed"]


def test_the_same_idempotency_key_and_body_return_the_first_job(service, components) -> None:
    first = service.submit("alice", fast_spec(), idempotency_key="k1")
    again = service.submit("alice", fast_spec(), idempotency_key="k1")
    assert again.id == first.id
    assert len(messages(components)) == 1
    with pytest.raises(IdempotencyConflict):
        service.submit("alice", fast_spec(name="other"), idempotency_key="k1")
    assert service.submit("bob", fast_spec(), idempotency_key="k1").id != first.id  # keys are per user


def test_an_idempotent_replay_answers_with_the_first_job_even_at_the_active_jobs_cap(tmp_path) -> None:
    service = JobService(make_components(tmp_path, max_active_jobs_per_user=1))
    first = service.submit("alice", fast_spec(), idempotency_key="k1")

    assert service.submit("alice", fast_spec(), idempotency_key="k1").id == first.id
    with pytest.raises(RateLimited):
        service.submit("alice", fast_spec(), idempotency_key="k2")


def test_artifacts_are_listed_and_served_for_the_owner_only(service, components) -> None:
    job = service.submit("alice", fast_spec())
    (components.artifacts.job_dir(job.id) / "result.json").write_text("{}")
    assert [a.path for a in service.artifacts("alice", job.id)] == ["result.json"]
    assert service.artifact_file("alice", job.id, "result.json").read_text() == "{}"
    with pytest.raises(ArtifactNotFound):
        service.artifact_file("alice", job.id, "../robotrain.sqlite3")
    with pytest.raises(JobNotFound):
        service.artifact_file("bob", job.id, "result.json")


def test_readiness_is_ok_when_the_store_and_queue_answer(service) -> None:
    assert service.readiness() == {"store": "ok", "queue": "ok"}


def test_readiness_names_the_dependency_that_does_not_answer(components) -> None:
    class QueueDown:  # the queue's ping fails as the adapters report an outage
        def __init__(self, queue):
            self._queue = queue

        def ping(self) -> None:
            raise QueueUnavailable("connection refused")

        def __getattr__(self, name):
            return getattr(self._queue, name)

    components.queue = QueueDown(components.queue)
    assert JobService(components).readiness() == {"store": "ok", "queue": "unavailable"}


def test_readiness_of_an_adapter_without_ping_is_unchecked(components) -> None:
    class NoPing:
        send = receive = delete = change_visibility = None

    components.queue = NoPing()
    assert JobService(components).readiness()["queue"] == "unchecked"
