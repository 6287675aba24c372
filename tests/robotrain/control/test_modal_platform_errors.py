"""The control plane over the real ModalLauncher when Modal itself fails: a transient spawn error backs off and is
retried by the drain, and no Modal error (transient or not) stops a sweep. Modal's objects are the fakes of
tests/support/modal_fakes.py raising Modal's own exception types (modal.exception.*); the store and queue are real."""

from __future__ import annotations

from pathlib import Path

import modal.exception
import pytest

from robotrain.adapters.modal_launcher import ModalLauncher
from robotrain.control.drain import Drainer
from robotrain.control.sweep import Sweeper
from robotrain.jobs.models import JobStatus
from robotrain.jobs.service import JobService
from tests.support.components import fast_spec, make_components
from tests.support.modal_fakes import FakeFunction

S = JobStatus


@pytest.fixture
def train() -> FakeFunction:
    return FakeFunction()


@pytest.fixture
def components(tmp_path: Path, train: FakeFunction):
    launcher = ModalLauncher(train, default_gpu="A10G", function_call_from_id=train.function_call)
    return make_components(tmp_path, launcher, max_concurrent_jobs=5, max_running_jobs_per_user=5)


@pytest.mark.parametrize(
    "error",
    [
        modal.exception.ServiceError("UNAVAILABLE"),
        modal.exception.ConnectionError("connection reset by peer"),
        modal.exception.ResourceExhaustedError("rate limit exceeded"),
        modal.exception.InternalFailure("retriable internal error"),
    ],
)
def test_a_transient_spawn_error_puts_the_job_back_and_the_next_drain_launches_it(components, train, error) -> None:
    job = JobService(components).submit("alice", fast_spec())
    train.spawn_errors.append(error)
    # a base below one second makes the first backoff 0 s, so the retry is visible at once
    drainer = Drainer(components, launch_backoff_base_s=0.5)

    first = drainer.drain_once()

    assert (first.launched, first.launch_failures, first.failed) == ([], 1, [])
    requeued = components.store.get(job.id)
    assert requeued.status is S.QUEUED and requeued.error is None
    reasons = [e.message for e in components.store.list_events(job.id) if e.kind == "status"]
    assert any(type(error).__name__ in reason and "launch failed" in reason for reason in reasons), reasons

    second = drainer.drain_once()

    assert second.launched == [job.id]
    launched = components.store.get(job.id)
    assert (launched.status, launched.attempt, launched.launch_handle) == (S.STARTING, 2, "fc-1")
    assert train.spawned == [(job.id, 2)]


def test_a_permanent_spawn_error_fails_the_job_at_once(components, train) -> None:
    job = JobService(components).submit("alice", fast_spec())
    train.spawn_errors.append(modal.exception.InvalidError("Invalid GPU config"))

    report = Drainer(components).drain_once()

    assert report.failed == [job.id]
    failed = components.store.get(job.id)
    assert failed.status is S.FAILED and failed.error.code == "launch_failed"
    assert "InvalidError" in failed.error.message


def test_modal_errors_while_releasing_compute_do_not_stop_the_sweep(components, train) -> None:
    service = JobService(components)
    jobs = [service.submit("alice", fast_spec()).id for _ in range(3)]
    assert sorted(Drainer(components).drain_once().launched) == sorted(jobs)
    for job_id in jobs:
        service.cancel("alice", job_id)
    handles = {job_id: components.store.get(job_id).launch_handle for job_id in jobs}
    # the first worker still runs and Modal refuses to stop it; the second cannot be asked about; the third ended
    stuck, unknown, ended = (train.calls[handles[job_id]] for job_id in jobs)
    stuck.outcome = TimeoutError()
    stuck.cancel_error = modal.exception.NotFoundError("function call not found")
    unknown.outcome = modal.exception.ServiceError("UNAVAILABLE")

    report = Sweeper(components, release_grace_s=0).sweep()

    assert report.cancel_retried == [jobs[0]]
    assert report.released == [jobs[2]]
    assert components.store.get(jobs[2]).launch_handle is None
    assert components.store.get(jobs[0]).launch_handle == handles[jobs[0]]  # asked again by the next sweep
    assert components.store.get(jobs[1]).launch_handle == handles[jobs[1]]
