from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from robotrain.control.drain import Drainer
from robotrain.jobs.lifecycle import apply_transition
from robotrain.jobs.models import JobChanges, JobStatus, utcnow
from robotrain.jobs.service import JobService
from robotrain.worker.reporter import JobReporter, StopReason
from tests.support.components import fast_spec, make_components

S = JobStatus


@pytest.fixture
def running(tmp_path: Path):
    components = make_components(tmp_path)
    service = JobService(components)
    job = service.submit("alice", fast_spec(compute={"timeout_minutes": 1}))
    Drainer(components).drain_once()
    job = apply_transition(components.store, components.store.get(job.id), S.RUNNING)
    return components, service, job


def reporter_for(components, job, **kwargs) -> JobReporter:
    return JobReporter(
        components.store, job, out_dir=components.artifacts.job_dir(job.id), heartbeat_interval_s=0.05, **kwargs
    )


def test_progress_writes_progress_heartbeat_and_metric_points(running) -> None:
    components, _, job = running
    reporter = reporter_for(components, job)
    reporter.progress(5, 20, {"train/loss": 1.5, "train/bad": float("nan")})
    reporter.progress(10, 20, {"train/loss": 1.0})
    stored = components.store.get(job.id)
    assert (stored.progress.step, stored.progress.total_steps) == (10, 20)
    assert stored.progress.metrics == {"train/loss": 1.0}
    assert components.store.list_metrics(job.id) == {"train/loss": [(5, 1.5), (10, 1.0)]}
    assert stored.heartbeat_at > job.heartbeat_at


def test_checkpoints_are_logged_relative_to_the_job_directory(running) -> None:
    components, _, job = running
    reporter = reporter_for(components, job)
    reporter.checkpoint(10, components.artifacts.job_dir(job.id) / "checkpoints" / "000010")
    event = components.store.list_events(job.id)[-1]
    assert event.kind == "log" and event.data == {"step": 10, "checkpoint": "checkpoints/000010"}


def test_the_background_thread_heartbeats_while_training_is_busy(running) -> None:
    components, _, job = running
    with reporter_for(components, job):
        first = components.store.get(job.id).heartbeat_at
        deadline = time.monotonic() + 30  # generous: a beat is due every 0.05 s
        while components.store.get(job.id).heartbeat_at == first:
            assert time.monotonic() < deadline, "no heartbeat while training was busy"
            time.sleep(0.02)
        assert components.store.get(job.id).heartbeat_at > first


def test_should_stop_when_the_job_is_cancelled(running) -> None:
    components, service, job = running
    reporter = reporter_for(components, job)
    assert reporter.should_stop() is False
    service.cancel("alice", job.id)
    reporter.heartbeat()  # the fenced write fails and tells the reporter why
    assert reporter.should_stop() is True and reporter.stop_reason == StopReason.CANCELLED


def test_should_stop_when_a_newer_attempt_owns_the_job_and_its_writes_change_nothing(running) -> None:
    components, _, job = running
    reporter = reporter_for(components, job)
    requeued = apply_transition(components.store, job, S.QUEUED, reason="worker_lost")
    apply_transition(components.store, requeued, S.STARTING)
    reporter.progress(7, 20, {"train/loss": 9.0})
    assert reporter.stop_reason == StopReason.SUPERSEDED
    stored = components.store.get(job.id)
    assert stored.progress.step == 0 and stored.attempt == 2


def test_should_stop_when_the_timeout_has_passed(running) -> None:
    components, _, job = running
    old = components.store.update(job.id, JobChanges(started_at=utcnow() - timedelta(minutes=2)), expected={S.RUNNING})
    reporter = reporter_for(components, old)
    assert reporter.should_stop() is True and reporter.stop_reason == StopReason.TIMEOUT
