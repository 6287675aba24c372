"""The worker on real training (mlp on a tiny builtin push2d, CPU) and the real SQLite store."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from robotrain.control.drain import Drainer
from robotrain.jobs.lifecycle import apply_transition
from robotrain.jobs.models import JobStatus
from robotrain.jobs.service import JobService
from robotrain.worker.runner import run_worker
from tests.support.components import fast_spec, make_components

S = JobStatus


def claimed(tmp_path: Path, **spec):
    components = make_components(tmp_path, progress_interval_s=0.05)
    service = JobService(components)
    job = service.submit("alice", fast_spec(**spec))
    assert Drainer(components).drain_once().launched == [job.id]
    return components, service, components.store.get(job.id)


def test_the_worker_trains_its_attempt_to_succeeded(tmp_path: Path) -> None:
    components, service, job = claimed(tmp_path)
    run_worker(components, job.id, 1)
    done = components.store.get(job.id)
    assert done.status is S.SUCCEEDED, done.error
    assert done.result["checkpoint"] == "checkpoints/000020"
    assert done.result["steps"] == 20 and "train/loss" in done.result["metrics"]
    assert done.progress.step == 20 and done.started_at is not None and done.finished_at is not None
    assert [p for p, _ in components.store.list_metrics(job.id)["train/loss"]][-1] == 20
    paths = {a.path for a in service.artifacts("alice", job.id)}
    assert "checkpoints/000020/pretrained_model/model.safetensors" in paths
    messages = [e.message for e in service.events("alice", job.id)]
    assert "checkpoint saved at step 10: checkpoints/000010" in messages
    assert [e.data["status"] for e in service.events("alice", job.id) if e.kind == "status"] == [
        "queued",
        "starting",
        "running",
        "succeeded",
    ]


def test_a_worker_whose_attempt_is_taken_exits_without_training(tmp_path: Path) -> None:
    components, service, job = claimed(tmp_path)
    apply_transition(components.store, job, S.RUNNING)  # another worker for attempt 1 got there first
    before = components.store.list_events(job.id)
    run_worker(components, job.id, 1)
    run_worker(components, job.id, 0)  # an older attempt
    assert components.store.list_events(job.id) == before
    assert components.store.get(job.id).status is S.RUNNING
    assert not (components.artifacts.job_dir(job.id) / "checkpoints").exists()


def test_a_worker_for_a_cancelled_job_exits_without_training(tmp_path: Path) -> None:
    components, service, job = claimed(tmp_path)
    service.cancel("alice", job.id)
    run_worker(components, job.id, 1)
    assert components.store.get(job.id).status is S.CANCELLED
    assert not (components.artifacts.job_dir(job.id) / "checkpoints").exists()


def test_a_training_error_fails_the_job_with_its_code(tmp_path: Path) -> None:
    components, _, job = claimed(tmp_path, dataset={"uri": f"file://{tmp_path}/no-such-dataset"})
    run_worker(components, job.id, 1)
    failed = components.store.get(job.id)
    assert failed.status is S.FAILED and failed.error.code == "dataset_invalid"
    assert "no-such-dataset" in failed.error.message


@pytest.mark.slow  # two training runs
def test_a_preempted_worker_hands_the_job_back_and_the_next_attempt_resumes(tmp_path: Path) -> None:
    components, service, job = claimed(tmp_path, training={**fast_spec().training.model_dump(), "steps": 60})

    def terminate_after_first_checkpoint() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any("checkpoint saved" in e.message for e in components.store.list_events(job.id)):
                os.kill(os.getpid(), signal.SIGTERM)  # the worker's handler asks training to stop
                return
            time.sleep(0.05)

    killer = threading.Thread(target=terminate_after_first_checkpoint, daemon=True)
    killer.start()
    run_worker(components, job.id, 1)
    killer.join()
    handed_back = components.store.get(job.id)
    assert handed_back.status is S.QUEUED and handed_back.attempt == 1
    assert handed_back.progress.step < 60
    assert Drainer(components).drain_once().launched == [job.id]
    run_worker(components, job.id, 2)
    done = components.store.get(job.id)
    assert done.status is S.SUCCEEDED, done.error
    assert done.result["resumed_from_step"] is not None and done.result["resumed_from_step"] >= 10
    assert done.attempt == 2
