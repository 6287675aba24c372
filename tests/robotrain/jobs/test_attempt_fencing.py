"""A stale attempt writes nothing: attempt 1's worker, its reporter and every transition it or the control plane could
still try are refused while attempt 2 owns the job, on both stores (SQLite, and Supabase through the PostgREST-subset
server and real PostgreSQL).

Each test stands attempt 2 up the way production does (attempt 1 running, requeued as lost, claimed again, running),
so the status alone cannot tell the writes apart: only the attempt fence can. Removing any one fence (the worker's
attempt check, the reporter's or apply_transition's expected_attempt, the drain's fenced handle record, or a store's
attempt filter) makes a test here fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from robotrain.adapters.local_artifacts import LocalArtifactStore
from robotrain.adapters.local_queue import LocalJobQueue
from robotrain.adapters.sqlite_datasets import SqliteDatasetStore
from robotrain.adapters.sqlite_store import SqliteJobStore
from robotrain.adapters.supabase_store import SupabaseJobStore
from robotrain.control.drain import Drainer
from robotrain.control.sweep import Sweeper
from robotrain.jobs import lifecycle
from robotrain.jobs.models import ErrorCode, Job, JobChanges, JobError, JobStatus, Progress
from robotrain.jobs.service import JobService
from robotrain.ports import Components, JobStore
from robotrain.settings import Settings
from robotrain.worker.reporter import JobReporter, StopReason
from robotrain.worker.runner import run_worker
from tests.support.clocks import UtcClock
from tests.support.components import FakeLauncher, fast_spec

S = JobStatus
ATTEMPT_2_PROGRESS = Progress(step=3, total_steps=20, metrics={"train/loss": 0.5})


@pytest.fixture(params=["sqlite", "supabase"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    if request.param == "sqlite":
        sqlite = SqliteJobStore(tmp_path / "robotrain.sqlite3")
        datasets = SqliteDatasetStore(sqlite.path)  # the file as wiring opens it: submit reads the datasets' tables
        yield sqlite
        datasets.close()
        sqlite.close()
    else:
        stack = request.getfixturevalue("supabase")
        supabase = SupabaseJobStore(stack.url, stack.service_key, timeout_s=30)
        yield supabase
        supabase.close()


def make_components(tmp_path: Path, store: JobStore, launcher: FakeLauncher | None = None, **values) -> Components:
    settings = Settings(data_dir=tmp_path / "data", heartbeat_stale_s=60, **values)
    return Components(
        settings=settings,
        store=store,
        queue=LocalJobQueue(settings.data_dir / "queue.sqlite3", max_receives=5, visibility_timeout_s=30),
        launcher=launcher or FakeLauncher(),
        artifacts=LocalArtifactStore(settings.resolved_artifacts_dir),
    )


@pytest.fixture
def components(tmp_path: Path, store: JobStore) -> Components:
    return make_components(tmp_path, store)


def claim(store: JobStore, job: Job) -> Job:
    claimed = lifecycle.claim(store, job, max_active=10, max_active_per_user=10)
    assert claimed is not None
    return claimed


def attempt_2_takes_over(store: JobStore, job_id: str, *, start: bool = True) -> Job:
    """Whatever attempt 1 was doing, the control plane gave up on it: requeued as lost, claimed as attempt 2, and (with
    `start`) attempt 2's worker began and reported progress. Returns the row as attempt 2 left it."""
    current = store.get(job_id)
    assert current is not None and current.attempt == 1
    requeued = lifecycle.apply_transition(store, current, S.QUEUED, reason="worker_lost", launch_handle=None)
    assert requeued is not None
    second = claim(store, requeued)
    assert second.attempt == 2
    if not start:
        return second
    running = lifecycle.apply_transition(store, second, S.RUNNING)
    assert running is not None
    reported = store.update(job_id, JobChanges(progress=ATTEMPT_2_PROGRESS), expected={S.RUNNING}, expected_attempt=2)
    assert reported is not None
    return reported


def attempt_1_running(components: Components) -> Job:
    """A job whose attempt 1 is running: the snapshot attempt 1's worker holds."""
    job = JobService(components).submit("alice", fast_spec())
    running = lifecycle.apply_transition(components.store, claim(components.store, job), S.RUNNING)
    assert running is not None and running.attempt == 1
    return running


def assert_untouched(store: JobStore, before: Job, events_before: int) -> None:
    """The row is exactly as attempt 2 left it, and no event was added on attempt 1's behalf."""
    assert store.get(before.id) == before
    assert len(store.list_events(before.id)) == events_before


# --- the worker -----------------------------------------------------------------------------------------------------


def test_attempt_1s_worker_starting_late_does_not_take_attempt_2s_claim(components: Components) -> None:
    # attempt 1's worker comes up (late, or run again by the platform) after its job was requeued and claimed again:
    # the job is starting, at attempt 2, and that claim is not attempt 1's to take
    job = attempt_1_running(components)
    current = attempt_2_takes_over(components.store, job.id, start=False)
    events = len(components.store.list_events(current.id))
    run_worker(components, current.id, 1)
    assert_untouched(components.store, current, events)
    assert not (components.artifacts.job_dir(current.id) / "checkpoints").exists()


@pytest.mark.parametrize("resume_own_attempt", [False, True], ids=["local", "platform-restart"])
def test_attempt_1s_worker_does_not_touch_the_job_while_attempt_2_runs(
    components: Components, resume_own_attempt: bool
) -> None:
    # platform-restart: Modal re-runs attempt 1's input after a crash, while attempt 2 already runs
    job = attempt_1_running(components)
    current = attempt_2_takes_over(components.store, job.id)
    events = len(components.store.list_events(job.id))
    run_worker(components, job.id, 1, resume_own_attempt=resume_own_attempt)
    assert_untouched(components.store, current, events)
    assert not (components.artifacts.job_dir(job.id) / "checkpoints").exists()


# --- the reporter ---------------------------------------------------------------------------------------------------


def test_attempt_1s_reporter_writes_nothing_while_attempt_2_runs_and_asks_training_to_stop(
    components: Components,
) -> None:
    job = attempt_1_running(components)
    reporter = JobReporter(
        components.store, job, out_dir=components.artifacts.job_dir(job.id), heartbeat_interval_s=3600
    )
    current = attempt_2_takes_over(components.store, job.id)
    events = len(components.store.list_events(job.id))

    reporter.progress(7, 20, {"train/loss": 9.0})
    reporter.heartbeat()
    reporter.log("attempt 1 still talking")
    reporter.checkpoint(10, components.artifacts.job_dir(job.id) / "checkpoints" / "000010")

    assert_untouched(components.store, current, events)
    assert components.store.list_metrics(job.id) == {}
    assert reporter.should_stop() is True and reporter.stop_reason is StopReason.SUPERSEDED


# --- every transition attempt 1 (or a control plane acting on its snapshot) can ask for ---------------------------

STALE_TRANSITIONS: dict[str, tuple[JobStatus, dict[str, Any]]] = {
    "worker: succeeded": (S.SUCCEEDED, {"result": {"steps": 20}, "progress": Progress(step=20, total_steps=20)}),
    "worker: failed training_error": (S.FAILED, {"error": JobError(code=ErrorCode.TRAINING_ERROR, message="crash")}),
    "worker: failed timeout": (S.FAILED, {"error": JobError(code=ErrorCode.TIMEOUT, message="ran too long")}),
    "worker: preempted": (S.QUEUED, {"reason": "preempted", "launch_handle": None}),
    "sweep: worker lost": (S.QUEUED, {"reason": "worker_lost", "launch_handle": None, "enqueued_at": None}),
    "sweep: failed worker_lost": (S.FAILED, {"error": JobError(code=ErrorCode.WORKER_LOST, message="lost 3 times")}),
    "sweep: failed timeout": (S.FAILED, {"error": JobError(code=ErrorCode.TIMEOUT, message="past the backstop")}),
}


def test_every_transition_from_attempt_1s_snapshot_is_refused_while_attempt_2_runs(components: Components) -> None:
    job = attempt_1_running(components)
    current = attempt_2_takes_over(components.store, job.id)
    events = len(components.store.list_events(job.id))
    for name, (target, fields) in STALE_TRANSITIONS.items():
        assert lifecycle.apply_transition(components.store, job, target, **fields) is None, name
        assert_untouched(components.store, current, events)


class RacingLauncher(FakeLauncher):
    """Runs `during` inside the first launch or liveness question it is asked: what another process did while this
    one waited on the platform."""

    def __init__(self) -> None:
        super().__init__()
        self.during: Callable[[], None] | None = None

    def _race(self) -> None:
        during, self.during = self.during, None
        if during is not None:
            during()

    def launch(self, job: Job) -> str:
        handle = super().launch(job)
        self._race()
        return handle

    def is_alive(self, handle: str) -> bool | None:
        self._race()
        return super().is_alive(handle)


@pytest.mark.parametrize("max_attempts", [3, 1], ids=["requeue", "fail"])
def test_a_sweep_that_judged_attempt_1_lost_does_not_undo_attempt_2(
    tmp_path: Path, store: JobStore, max_attempts: int
) -> None:
    launcher = RacingLauncher()
    components = make_components(tmp_path, store, launcher, max_attempts=max_attempts)
    job = attempt_1_running(components)
    store.update(job.id, JobChanges(launch_handle="fake:attempt-1"), expected={S.RUNNING}, expected_attempt=1)
    launcher.alive["fake:attempt-1"] = False
    taken_over: list[Job] = []
    # while this sweep asks whether attempt 1's worker runs, another sweep and drain already moved on to attempt 2
    launcher.during = lambda: taken_over.append(attempt_2_takes_over(store, job.id))
    clock = UtcClock()
    clock.advance(61)
    report = Sweeper(components, clock=clock).sweep()
    assert taken_over, "the sweep never asked about attempt 1's worker"
    assert report.requeued == report.failed == []
    assert store.get(job.id) == taken_over[0]


def test_a_drain_whose_launch_of_attempt_1_was_overtaken_records_nothing_and_stops_it(
    tmp_path: Path, store: JobStore
) -> None:
    launcher = RacingLauncher()
    components = make_components(tmp_path, store, launcher)
    job = JobService(components).submit("alice", fast_spec())
    taken_over: list[Job] = []

    def overtake() -> None:
        # attempt 1's launch hung; the sweep requeued the starting job, another drain claimed and launched attempt 2
        requeued = lifecycle.apply_transition(store, store.get(job.id), S.QUEUED, reason="launch stalled")
        second = claim(store, requeued)
        recorded = store.update(
            job.id, JobChanges(launch_handle="fake:attempt-2"), expected={S.STARTING}, expected_attempt=2
        )
        taken_over.append(lifecycle.apply_transition(store, recorded, S.RUNNING))
        assert second.attempt == 2

    launcher.during = overtake
    report = Drainer(components).drain_once()
    assert taken_over, "the drain never launched attempt 1"
    assert report.launched == []
    assert store.get(job.id) == taken_over[0]
    assert launcher.cancelled == [f"fake:{job.id}:1"]  # attempt 1's worker is stopped, not left to run
