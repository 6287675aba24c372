from __future__ import annotations

import itertools

import pytest

from robotrain.jobs.models import Job, JobError, JobStatus, utcnow
from robotrain.jobs.state_machine import IllegalTransition, can_transition, sources_of, transition

S = JobStatus

LEGAL = {
    (S.QUEUED, S.STARTING),
    (S.QUEUED, S.CANCELLED),
    (S.QUEUED, S.FAILED),
    (S.STARTING, S.RUNNING),
    (S.STARTING, S.QUEUED),
    (S.STARTING, S.FAILED),
    (S.STARTING, S.CANCELLED),
    (S.RUNNING, S.SUCCEEDED),
    (S.RUNNING, S.FAILED),
    (S.RUNNING, S.CANCELLED),
    (S.RUNNING, S.QUEUED),
}
ALL_PAIRS = list(itertools.product(S, S))


def job_in(status: JobStatus, attempt: int = 2) -> Job:
    now = utcnow()
    return Job(
        id="job_01hzzzzzzzzzzzzzzzzzzzzzzz",
        user_id="alice",
        name="n",
        status=status,
        spec={},
        attempt=attempt,
        created_at=now,
        updated_at=now,
    )


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS])
def test_every_pair_is_legal_exactly_when_the_table_says_so(current: JobStatus, target: JobStatus) -> None:
    job = job_in(current)
    if (current, target) in LEGAL:
        assert can_transition(current, target)
        change = transition(job, target)
        assert change.changes.status is target
        assert change.expected == frozenset({current})
    else:
        assert not can_transition(current, target)
        with pytest.raises(IllegalTransition) as caught:
            transition(job, target)
        assert current.value in str(caught.value) and target.value in str(caught.value)


@pytest.mark.parametrize("terminal", sorted(S.terminal()))
def test_terminal_states_never_change(terminal: JobStatus) -> None:
    for target in S:
        with pytest.raises(IllegalTransition):
            transition(job_in(terminal), target)


def test_claiming_increments_the_attempt() -> None:
    change = transition(job_in(S.QUEUED, attempt=2), S.STARTING)
    assert change.changes.attempt == 3


def test_running_stamps_started_and_heartbeat_and_terminal_stamps_finished() -> None:
    running = transition(job_in(S.STARTING), S.RUNNING).changes
    assert running.started_at is not None and running.heartbeat_at is not None
    assert running.attempt is None  # the worker's attempt is the claim's; only a claim moves it
    for target in (S.SUCCEEDED, S.FAILED, S.CANCELLED):
        assert transition(job_in(S.RUNNING), target).changes.finished_at is not None


def test_extra_fields_ride_along_in_the_same_write() -> None:
    error = JobError(code="launch_failed", message="no")
    change = transition(job_in(S.STARTING), S.FAILED, error=error)
    assert change.changes.error == error
    assert {"status", "finished_at", "error"} == change.changes.model_fields_set


def test_sources_of_matches_the_table() -> None:
    for target in S:
        assert sources_of(target) == {a for a, b in LEGAL if b is target}
