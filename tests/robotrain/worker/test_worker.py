"""The worker on real training (mlp on a tiny builtin push2d, CPU) and the real SQLite store."""

from __future__ import annotations

import os
import re
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
from tests.support.datasets import make_upload

S = JobStatus


def claimed(tmp_path: Path, settings: dict | None = None, user: str = "alice", **spec):
    components = make_components(tmp_path, progress_interval_s=0.05, file_dataset_roots=[tmp_path], **(settings or {}))
    service = JobService(components)
    job = service.submit(user, fast_spec(**spec))
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


def test_a_crash_shows_the_user_an_error_id_and_one_line_without_host_paths(tmp_path: Path, caplog) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("the dataset cache cannot be created under a file")
    components, service, job = claimed(tmp_path, {"dataset_cache_dir": blocker / "cache"})
    with caplog.at_level("ERROR", logger="robotrain.worker.runner"):
        run_worker(components, job.id, 1)
    failed = components.store.get(job.id)
    assert failed.status is S.FAILED and failed.error.code == "training_error"
    error_id = re.search(r"\(error id (err_[0-9a-f]{16})\)$", failed.error.message).group(1)
    shown = [failed.error.message] + [event.message for event in service.events("alice", job.id)]
    assert not [text for text in shown if str(tmp_path) in text or "Traceback" in text or "\n" in text]
    assert any("training crashed: NotADirectoryError" in text and error_id in text for text in shown)
    logged = [record for record in caplog.records if error_id in record.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback goes to the server's log, with the id


def test_an_upload_trains_for_its_owner_and_its_artifacts_count_towards_their_storage(tmp_path: Path) -> None:
    components = make_components(tmp_path, progress_interval_s=0.05)
    upload = make_upload(components, "alice")
    job = JobService(components).submit("alice", fast_spec(dataset={"uri": upload.uri}))
    Drainer(components).drain_once()
    run_worker(components, job.id, 1)
    assert components.store.get(job.id).status is S.SUCCEEDED
    artifacts = sum(a.size for a in components.artifacts.list_files(job.id))
    assert components.datasets.usage_bytes("alice") >= upload.bytes + artifacts > upload.bytes
    assert components.datasets.usage_bytes("bob") == 0


def test_a_job_naming_another_users_upload_fails_without_reading_it(tmp_path: Path) -> None:
    components = make_components(tmp_path, progress_interval_s=0.05)
    upload = make_upload(components, "alice")
    job = JobService(components).submit("alice", fast_spec(dataset={"uri": upload.uri}))
    # A row that names alice's upload but belongs to bob (written past the API, which refuses it at submit).
    with components.datasets._db.transaction() as conn:  # noqa: SLF001 - forging the row is the point
        conn.execute("UPDATE jobs SET user_id = 'bob' WHERE id = ?", (job.id,))
    Drainer(components).drain_once()
    run_worker(components, job.id, 1)
    failed = components.store.get(job.id)
    assert failed.status is S.FAILED and failed.error.code == "dataset_forbidden"
    assert not (components.artifacts.job_dir(job.id) / "checkpoints").exists()


def test_a_job_that_passes_the_storage_limit_stops_at_its_next_checkpoint(tmp_path: Path) -> None:
    components, service, job = claimed(tmp_path, {"max_artifacts_bytes_per_user": 1_000_000})
    # Admitted with room to spare; then another of alice's jobs fills her storage while this one waits to run.
    components.datasets.record_artifact_bytes("job_other", user_id="alice", size=999_000)
    run_worker(components, job.id, 1)
    failed = components.store.get(job.id)
    assert failed.status is S.FAILED and failed.error.code == "limit_exceeded", failed.error
    assert "over this service's limit of 1,000,000 per user" in failed.error.message
    checkpoints = components.artifacts.job_dir(job.id) / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir() if p.name.isdigit()) == ["000010"]  # kept; no step after
