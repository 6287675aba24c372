"""The sweep on the real SQLite store and local queue, with a FakeLauncher (its liveness answers are the input under
test) and a UtcClock: staleness, resend and timeout bounds are reached by moving the sweep's clock, never by sleeping."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from robotrain.control.drain import Drainer
from robotrain.control.sweep import Sweeper
from robotrain.errors import LaunchError, QueueUnavailable
from robotrain.jobs.lifecycle import apply_transition, new_queued_job
from robotrain.jobs.models import JobStatus, new_job_id, utcnow
from robotrain.jobs.service import JobService
from robotrain.jobs.submission import Created, SubmitRequest
from robotrain.ports import Components
from tests.support.clocks import UtcClock
from tests.support.components import FakeLauncher, fast_spec, make_components

S = JobStatus
STALE_S = 60.0
PAST_STALE_S = STALE_S + 1


def setup(tmp_path: Path, **settings):
    launcher = FakeLauncher()
    values = {"heartbeat_stale_s": STALE_S, "max_attempts": 3, **settings}
    components = make_components(tmp_path, launcher, **values)
    service = JobService(components)
    clock = UtcClock()
    sweeper = Sweeper(components, unsent_grace_s=0, clock=clock)
    return components, service, Drainer(components), sweeper, launcher, clock


def start_running(components: Components, drainer: Drainer, job_id: str):
    assert drainer.drain_once().launched == [job_id]
    return apply_transition(components.store, components.store.get(job_id), S.RUNNING)


class DownQueue:
    def __init__(self, queue):
        self._queue = queue

    def send(self, body: str) -> str:
        raise QueueUnavailable("down")

    def __getattr__(self, name):
        return getattr(self._queue, name)


def test_a_job_whose_message_was_never_sent_is_sent_by_the_sweep(tmp_path: Path) -> None:
    components, service, drainer, sweeper, launcher, clock = setup(tmp_path)
    real_queue = components.queue
    components.queue = DownQueue(real_queue)
    job = service.submit("alice", fast_spec())
    assert sweeper.sweep().resent == []  # still down: nothing sent, nothing lost
    components.queue = real_queue
    assert sweeper.sweep().resent == [job.id]
    assert components.store.get(job.id).enqueued_at is not None
    assert drainer.drain_once().launched == [job.id]


def test_a_job_enqueued_long_ago_is_resent_only_when_there_is_room(tmp_path: Path) -> None:
    components, service, drainer, _, launcher, clock = setup(tmp_path, max_concurrent_jobs=1)
    sweeper = Sweeper(components, resend_after_s=600, unsent_grace_s=0, clock=clock)
    job = service.submit("alice", fast_spec())
    components.queue.receive(max_messages=10, visibility_timeout=3600)  # its message is lost in flight
    assert sweeper.sweep().resent == []  # room, but not yet long enough
    busy = service.submit("bob", fast_spec())
    start_running(components, drainer, busy.id)  # takes the only slot
    clock.advance(601)
    assert sweeper.sweep().resent == []  # long enough, but no room: most likely just waiting
    apply_transition(components.store, components.store.get(busy.id), S.SUCCEEDED)
    assert sweeper.sweep().resent == [job.id]
    assert drainer.drain_once().launched == [job.id]


def test_a_fresh_running_job_is_left_alone(tmp_path: Path) -> None:
    components, service, drainer, sweeper, launcher, clock = setup(tmp_path)
    job = service.submit("alice", fast_spec())
    running = start_running(components, drainer, job.id)
    launcher.alive[running.launch_handle] = False  # it would be requeued if the sweep asked
    clock.advance(STALE_S / 2)  # the margin keeps it fresh however long this test itself takes
    report = sweeper.sweep()
    assert report.requeued == report.failed == report.alive == report.unknown == []
    assert components.store.get(job.id).status is S.RUNNING


def test_a_stale_job_whose_worker_is_alive_is_left_alone(tmp_path: Path) -> None:
    components, service, drainer, sweeper, launcher, clock = setup(tmp_path)
    job = service.submit("alice", fast_spec())
    start_running(components, drainer, job.id)
    clock.advance(PAST_STALE_S)
    assert sweeper.sweep().alive == [job.id]
    assert components.store.get(job.id).status is S.RUNNING


def test_a_lost_worker_is_requeued_and_the_next_claim_gets_a_new_attempt(tmp_path: Path) -> None:
    components, service, drainer, sweeper, launcher, clock = setup(tmp_path)
    job = service.submit("alice", fast_spec())
    running = start_running(components, drainer, job.id)
    launcher.alive[running.launch_handle] = False
    clock.advance(PAST_STALE_S)
    assert sweeper.sweep().requeued == [job.id]
    requeued = components.store.get(job.id)
    assert (requeued.status, requeued.attempt, requeued.launch_handle) == (S.QUEUED, 1, None)
    assert requeued.enqueued_at is not None
    assert drainer.drain_once().launched == [job.id]
    assert launcher.launched[-1] == (job.id, 2)


def test_a_starting_job_without_a_handle_is_requeued_when_stale(tmp_path: Path) -> None:
    components, service, drainer, sweeper, launcher, clock = setup(tmp_path)
    job = service.submit("alice", fast_spec())
    apply_transition(components.store, job, S.STARTING)  # the drain died before launching
    clock.advance(PAST_STALE_S)
    assert sweeper.sweep().requeued == [job.id]
    assert components.store.get(job.id).status is S.QUEUED


def test_after_max_attempts_lost_workers_the_job_fails_worker_lost(tmp_path: Path) -> None:
    components, service, drainer, sweeper, launcher, clock = setup(tmp_path, max_attempts=2)
    job = service.submit("alice", fast_spec())
    for attempt in (1, 2):
        running = start_running(components, drainer, job.id)
        assert running.attempt == attempt
        launcher.alive[running.launch_handle] = False
        clock.advance(PAST_STALE_S)
        sweeper.sweep()
    failed = components.store.get(job.id)
    assert failed.status is S.FAILED and failed.error.code == "worker_lost"
    assert "2 times" in failed.error.message


def test_a_running_job_past_its_timeout_is_failed_and_its_compute_stopped(tmp_path: Path) -> None:
    components, service, drainer, sweeper, launcher, clock = setup(tmp_path)
    job = service.submit("alice", fast_spec(compute={"timeout_minutes": 1}))
    running = start_running(components, drainer, job.id)
    clock.advance(90)  # past the timeout, within the sweep's margin (heartbeat_stale_s) for the worker to fail it
    assert sweeper.sweep().failed == []
    clock.advance(31)
    assert sweeper.sweep().failed == [job.id]
    failed = components.store.get(job.id)
    assert failed.status is S.FAILED and failed.error.code == "timeout"
    assert launcher.cancelled == [running.launch_handle]


def test_idempotency_keys_are_forgotten_after_their_time_to_live(tmp_path: Path) -> None:
    components, service, _, _, _, clock = setup(tmp_path)
    first = service.submit("alice", fast_spec(), idempotency_key="k")
    assert Sweeper(components, clock=clock).sweep().forgotten_keys == 0  # kept for 24 h by default
    assert service.submit("alice", fast_spec(), idempotency_key="k").id == first.id
    clock.advance(24 * 3600 - 60)
    assert Sweeper(components, clock=clock).sweep().forgotten_keys == 0
    clock.advance(61)
    assert Sweeper(components, clock=clock).sweep().forgotten_keys == 1
    assert service.submit("alice", fast_spec(), idempotency_key="k").id != first.id


def test_a_backlog_of_unsent_jobs_is_sent_page_by_page_behind_sent_ones(tmp_path: Path) -> None:
    components, service, drainer, _, launcher, _ = setup(tmp_path)
    sweeper = Sweeper(components, unsent_grace_s=0, batch=2)
    older = [service.submit("alice", fast_spec()) for _ in range(3)]  # sent, and waiting in the queue
    real_queue = components.queue
    components.queue = DownQueue(real_queue)
    unsent = [service.submit("bob", fast_spec()) for _ in range(5)]
    components.queue = real_queue
    resent: list[str] = []
    for _ in range(3):
        resent += sweeper.sweep().resent
    assert resent == [job.id for job in unsent]  # the three older queued jobs did not hide them
    assert all(components.store.get(job.id).enqueued_at is not None for job in older + unsent)


class StubbornLauncher(FakeLauncher):
    """launcher.cancel fails `failures` times (the platform could not be reached), then works."""

    def __init__(self, failures: int):
        super().__init__()
        self.cancel_failures = failures

    def cancel(self, handle: str) -> None:
        if self.cancel_failures:
            self.cancel_failures -= 1
            raise LaunchError("the platform did not answer")
        super().cancel(handle)


def test_a_cancel_whose_compute_survived_is_retried_and_the_release_recorded(tmp_path: Path) -> None:
    launcher = StubbornLauncher(failures=1)
    components = make_components(tmp_path, launcher)
    service, drainer = JobService(components), Drainer(components)
    sweeper = Sweeper(components, release_grace_s=0)
    job = service.submit("alice", fast_spec())
    handle = start_running(components, drainer, job.id).launch_handle
    assert service.cancel("alice", job.id).status is S.CANCELLED  # the stop failed, the cancel stands
    assert launcher.alive[handle] is True and launcher.cancelled == []
    first = sweeper.sweep()
    assert first.cancel_retried == [job.id] and launcher.cancelled == [handle]
    second = sweeper.sweep()
    assert second.released == [job.id]
    assert components.store.get(job.id).launch_handle is None
    assert sweeper.sweep().released == []  # recorded once
    released = [e for e in components.store.list_events(job.id) if e.message.startswith("compute released")]
    assert len(released) == 1 and "released_at" in released[0].data


def test_an_ended_job_is_left_to_its_own_cancel_during_the_grace_period(tmp_path: Path) -> None:
    launcher = StubbornLauncher(failures=1)
    components = make_components(tmp_path, launcher)
    service, drainer = JobService(components), Drainer(components)
    job = service.submit("alice", fast_spec())
    start_running(components, drainer, job.id)
    service.cancel("alice", job.id)
    report = Sweeper(components, release_grace_s=60).sweep()
    assert report.cancel_retried == [] and report.released == []


def test_a_job_whose_request_died_before_its_send_is_sent_once_it_has_waited(tmp_path: Path) -> None:
    components, _, drainer, _, launcher, clock = setup(tmp_path)
    sweeper = Sweeper(components, resend_after_s=600, unsent_grace_s=0, clock=clock)
    # the request stored the job (stamped as sent, as every submit does) and its process died before the send
    now = utcnow()
    job, event = new_queued_job(new_job_id(), "alice", fast_spec().model_dump(mode="json"), name="tiny", now=now)
    request = SubmitRequest(
        job=job, event=event, now=now, rate_per_minute=30, max_unfinished=10, unfinished_statuses=frozenset({S.QUEUED})
    )
    assert isinstance(components.store.submit(request), Created)
    assert sweeper.sweep().resent == []  # not yet long enough
    clock.advance(601)
    assert sweeper.sweep().resent == [job.id]
    assert drainer.drain_once().launched == [job.id]


# --- liveness unknown: the launcher cannot tell (e.g. Modal unreachable) -----------------------------------------

UNKNOWN_MAX_S = 300


def test_a_stale_job_whose_liveness_is_unknown_is_neither_requeued_nor_failed_within_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROBOTRAIN_LIVENESS_UNKNOWN_MAX_S", str(UNKNOWN_MAX_S))  # the bound is a setting
    components, service, drainer, sweeper, launcher, clock = setup(tmp_path, max_attempts=1)
    job = service.submit("alice", fast_spec())
    running = start_running(components, drainer, job.id)
    launcher.alive[running.launch_handle] = None
    for silent_s in (PAST_STALE_S, UNKNOWN_MAX_S - 60):  # sweeps come and go; none decides without an answer
        clock.offset = timedelta(seconds=silent_s)
        report = sweeper.sweep()
        assert report.unknown == [job.id]
        assert report.requeued == report.failed == report.alive == []
    unchanged = components.store.get(job.id)
    assert (unchanged.status, unchanged.attempt, unchanged.launch_handle) == (S.RUNNING, 1, running.launch_handle)
    assert launcher.cancelled == []

    launcher.alive[running.launch_handle] = True  # the platform answers again: the worker runs
    assert sweeper.sweep().alive == [job.id]
    assert components.store.get(job.id).status is S.RUNNING


def test_past_the_bound_a_job_whose_liveness_stays_unknown_is_lost_even_for_a_new_sweeper(tmp_path: Path) -> None:
    components, service, drainer, sweeper, launcher, clock = setup(tmp_path, liveness_unknown_max_s=UNKNOWN_MAX_S)
    job = service.submit("alice", fast_spec())
    running = start_running(components, drainer, job.id)
    launcher.alive[running.launch_handle] = None
    clock.advance(PAST_STALE_S)
    assert sweeper.sweep().unknown == [job.id]
    clock.advance(UNKNOWN_MAX_S)
    # a sweeper that never saw the job before (another process, or after a restart) reaches the same decision
    report = Sweeper(components, unsent_grace_s=0, clock=clock).sweep()
    assert report.requeued == [job.id] and report.unknown == []
    requeued = components.store.get(job.id)
    assert (requeued.status, requeued.attempt, requeued.launch_handle) == (S.QUEUED, 1, None)
    assert launcher.cancelled == [running.launch_handle]  # in case it still runs
    [note] = [e for e in components.store.list_events(job.id) if "treated as lost" in e.message]
    assert note.data["attempt"] == 1 and note.data["silent_s"] >= UNKNOWN_MAX_S
    assert drainer.drain_once().launched == [job.id]
    assert launcher.launched[-1] == (job.id, 2)


def test_past_the_bound_on_its_last_attempt_a_job_whose_liveness_stays_unknown_fails_worker_lost(
    tmp_path: Path,
) -> None:
    components, service, drainer, sweeper, launcher, clock = setup(
        tmp_path, liveness_unknown_max_s=UNKNOWN_MAX_S, max_attempts=1
    )
    job = service.submit("alice", fast_spec())
    running = start_running(components, drainer, job.id)
    launcher.alive[running.launch_handle] = None
    clock.advance(UNKNOWN_MAX_S + 1)
    assert sweeper.sweep().failed == [job.id]
    failed = components.store.get(job.id)
    assert failed.status is S.FAILED and failed.error.code == "worker_lost"
    assert launcher.cancelled == [running.launch_handle]
