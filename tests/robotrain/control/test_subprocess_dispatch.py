"""Dispatch with real worker processes: the SubprocessLauncher, the SQLite store and queue, real training."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from robotrain.adapters.subprocess_launcher import SubprocessLauncher, parse_handle
from robotrain.control.loop import Dispatcher, DispatchLoop
from robotrain.jobs.models import JobStatus
from robotrain.jobs.service import JobService
from robotrain.ports import Components
from tests.support.components import fast_spec, make_components

S = JobStatus


def wait_until(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Components, JobService, DispatchLoop]]:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # workers inherit it: one BLAS thread each on this shared CPU
    components = make_components(
        tmp_path,
        progress_interval_s=0.2,
        heartbeat_interval_s=0.3,
        heartbeat_stale_s=3.0,
        drain_interval_s=0.2,
        max_checkpoint_saves=1_000_000,  # long_spec runs until cancelled, checkpointing often
    )
    components.launcher = SubprocessLauncher(components.settings, kill_grace_s=5)
    loop = DispatchLoop(Dispatcher(components), interval_s=0.2)
    service = JobService(components, kick=loop.kick)
    loop.start()
    handles: list[str] = []
    yield components, service, loop
    loop.stop()
    for job in components.store.find(statuses=set(S), limit=100):
        if job.launch_handle:
            handles.append(job.launch_handle)
    for handle in handles:  # never leave a worker behind
        if components.launcher.is_alive(handle):
            os.killpg(parse_handle(handle)[0], signal.SIGKILL)


def long_spec():
    return fast_spec(training={**fast_spec().training.model_dump(), "steps": 100_000, "checkpoint_every": 5})


@pytest.mark.slow  # starts a real worker (imports torch)
def test_cancelling_a_running_job_stops_its_worker_within_seconds(stack) -> None:
    components, service, _ = stack
    job = service.submit("alice", long_spec())
    assert wait_until(lambda: components.store.get(job.id).progress.step > 0, 120)
    handle = components.store.get(job.id).launch_handle
    assert components.launcher.is_alive(handle)
    assert service.cancel("alice", job.id).status is S.CANCELLED
    assert wait_until(lambda: components.launcher.is_alive(handle) is False, 15)
    assert components.store.get(job.id).status is S.CANCELLED


def resumed_at(components: Components, job_id: str) -> int | None:
    """The step a later attempt resumed from, from its "resumed from <checkpoint> at step N" log line."""
    for event in components.store.list_events(job_id):
        match = re.fullmatch(r"resumed from .* at step (\d+)", event.message)
        if match:
            return int(match.group(1))
    return None


@pytest.mark.slow  # two real workers
def test_a_worker_killed_mid_run_is_requeued_and_the_next_attempt_resumes(stack) -> None:
    components, service, _ = stack
    # 100,000 steps: the kill lands mid-run however fast the machine; the test ends once attempt 2 has resumed
    # (a resumed attempt trained to success is tests/faults/test_process_faults.py's).
    job = service.submit("alice", long_spec())
    assert wait_until(lambda: components.store.get(job.id).progress.step >= 10, 120)  # past a checkpoint
    first = components.store.get(job.id)
    os.killpg(parse_handle(first.launch_handle)[0], signal.SIGKILL)
    assert wait_until(lambda: resumed_at(components, job.id) is not None, 180)
    resumed = components.store.get(job.id)
    assert (resumed.status, resumed.attempt) == (S.RUNNING, 2)
    assert resumed_at(components, job.id) >= 5  # from a checkpoint of attempt 1, not from scratch
    reasons = [e.data.get("reason") for e in components.store.list_events(job.id) if e.kind == "status"]
    assert reasons.count("worker_lost") == 1
