"""A real worker process (the SubprocessLauncher's `python -m robotrain.entrypoints.worker`) sent a real SIGINT, as
Modal preempts a container: it finishes its step, saves a checkpoint, records why it stopped, hands the job back to
the queue, and exits."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from robotrain.adapters.subprocess_launcher import SubprocessLauncher, parse_handle
from robotrain.control.drain import Drainer
from robotrain.jobs.models import JobStatus
from robotrain.jobs.service import JobService
from tests.support.components import fast_spec, make_components


def wait_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.mark.slow  # starts a real worker (imports torch)
def test_sigint_checkpoints_records_the_preemption_and_hands_the_job_back(tmp_path: Path) -> None:
    components = make_components(
        tmp_path,
        progress_interval_s=0.2,
        heartbeat_interval_s=0.5,
        max_checkpoint_saves=1_000_000,  # runs until the signal, checkpointing often
    )
    launcher = SubprocessLauncher(components.settings, kill_grace_s=30)
    components.launcher = launcher
    spec = fast_spec(training={**fast_spec().training.model_dump(), "steps": 1_000_000, "checkpoint_every": 5})
    job = JobService(components).submit("alice", spec)
    assert Drainer(components).drain_once().launched == [job.id]
    handle = components.store.get(job.id).launch_handle
    pid = parse_handle(handle)[0]
    try:
        assert wait_until(
            lambda: any("checkpoint saved" in e.message for e in components.store.list_events(job.id)), 120
        ), components.store.get(job.id)

        os.killpg(pid, signal.SIGINT)

        assert wait_until(lambda: launcher.is_alive(handle) is False, 60)
    finally:
        if launcher.is_alive(handle):
            os.killpg(pid, signal.SIGKILL)

    handed_back = components.store.get(job.id)
    assert handed_back.status is JobStatus.QUEUED and handed_back.attempt == 1, handed_back.error
    assert handed_back.launch_handle is None and handed_back.enqueued_at is not None
    events = components.store.list_events(job.id)
    assert [e.data.get("reason") for e in events if e.kind == "status"][-1] == "preempted"
    [preempted] = [e for e in events if e.message.startswith("preempted")]
    assert preempted.data["signal"] == "SIGINT"
    step = preempted.data["step"]
    assert 0 < step < 1_000_000
    # the checkpoint of the step it stopped at is on disk, so the next attempt resumes from it
    checkpoint = components.artifacts.job_dir(job.id) / preempted.data["checkpoint"]
    assert checkpoint.name == f"{step:06d}"
    assert (checkpoint / "pretrained_model" / "model.safetensors").is_file()
    log = (components.settings.data_dir / "logs" / job.id / "worker-1.log").read_text()  # the server's log
    assert "KeyboardInterrupt" not in log
