"""Faults about processes: a worker killed mid-run, the server killed with -9 and restarted, and a checkpoint left
truncated on disk when an attempt resumes. Real worker processes where the fault is about processes."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from robotrain.adapters.sqlite_store import SqliteJobStore
from robotrain.adapters.subprocess_launcher import SubprocessLauncher, parse_handle
from robotrain.auth.local_keys import LocalKeys
from robotrain.control.drain import Drainer
from robotrain.control.loop import Dispatcher
from robotrain.control.sweep import Sweeper
from robotrain.jobs.models import JobStatus
from robotrain.jobs.service import JobService
from robotrain.ports import Components
from tests.e2e.test_local_stack import Stack as ServerStack
from tests.e2e.test_local_stack import User, worker_pids
from tests.faults.harness import FAST_SETTINGS, TrainingRuns, assert_truthful, build_stack, running_attempts, tiny_spec
from tests.support.components import make_components

S = JobStatus


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout_s: float, what: str, tick=None) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        if tick is not None:
            tick()
        time.sleep(0.1)


@pytest.fixture
def process_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Components, Dispatcher]]:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # workers inherit it: one BLAS thread each on this shared CPU
    components = make_components(tmp_path, **FAST_SETTINGS)
    components.launcher = SubprocessLauncher(components.settings, kill_grace_s=5)
    dispatcher = Dispatcher(
        components,
        drainer=Drainer(components, launch_backoff_base_s=0),
        sweeper=Sweeper(components, unsent_grace_s=0, release_grace_s=0),
    )
    yield components, dispatcher
    for job in components.store.find(statuses=set(S), limit=100):  # never leave a worker behind
        if job.launch_handle and components.launcher.is_alive(job.launch_handle):
            os.killpg(parse_handle(job.launch_handle)[0], signal.SIGKILL)


@pytest.mark.slow  # two real worker processes
def test_a_worker_killed_mid_run_is_requeued_and_resumes_from_its_checkpoint(process_stack) -> None:
    components, dispatcher = process_stack
    store = components.store

    def tick() -> None:
        dispatcher.drain_once()
        dispatcher.sweep()

    # Long enough that the kill lands mid-run even on a quiet machine; killed past its first checkpoint.
    job = JobService(components).submit("alice", tiny_spec(steps=1500, checkpoint_every=50))
    wait_until(lambda: store.get(job.id).progress.step >= 60, 120, "the first attempt to pass step 60", tick)
    os.killpg(parse_handle(store.get(job.id).launch_handle)[0], signal.SIGKILL)  # the injected fault: kill -9
    wait_until(lambda: store.get(job.id).status.is_terminal, 180, "the job to end", tick)
    assert_truthful(store, {job.id: (S.SUCCEEDED, None)})
    done = store.get(job.id)
    assert running_attempts(store, job.id) == [1, 2] and done.attempt == 2
    assert done.result["resumed_from_step"] >= 50
    reasons = [e.data.get("reason") for e in store.list_events(job.id) if e.kind == "status"]
    assert reasons.count("worker_lost") == 1
    logs = sorted(p.name for p in (components.settings.data_dir / "logs" / job.id).iterdir())
    assert logs == ["worker-1.log", "worker-2.log"]  # one worker process per attempt, no more


class StopAtStep:
    """A training Reporter that asks the run to stop once it reaches `step` (as a cancel or SIGTERM would)."""

    def __init__(self, step: int):
        self.stop_at, self.step = step, 0

    def progress(self, step: int, total: int, metrics: dict[str, float]) -> None:
        self.step = step

    def checkpoint(self, step: int, path: Path) -> None: ...

    def log(self, message: str, data: dict | None = None) -> None: ...

    def should_stop(self) -> bool:
        return self.step >= self.stop_at


def test_a_truncated_checkpoint_at_resume_falls_back_to_the_previous_complete_one(
    tmp_path: Path, runs: TrainingRuns
) -> None:
    stack = build_stack(tmp_path, runs)
    spec = tiny_spec(steps=30, checkpoint_every=10)
    job = stack.service.submit("alice", spec)
    # An earlier attempt trained this job to step 20 in its directory, then the newest checkpoint was damaged on
    # disk (the injected fault: its weights file cut short).
    out_dir = stack.components.artifacts.job_dir(job.id)
    runs.real(spec, out_dir, StopAtStep(20), report_interval_s=0)
    newest = out_dir / "checkpoints" / "000020" / "pretrained_model" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:-64])
    stack.run_until_terminal([job.id])
    assert_truthful(stack.store, {job.id: (S.SUCCEEDED, None)}, runs, {job.id: 1})
    done = stack.store.get(job.id)
    assert done.result["resumed_from_step"] == 10 and done.result["steps"] == 30
    assert any("000020" in e.message for e in stack.store.list_events(job.id) if e.kind == "log")


@pytest.mark.slow  # starts `robotrain serve` twice and two worker processes
def test_kill_9_of_the_server_mid_job_loses_nothing_and_runs_nothing_twice(tmp_path: Path) -> None:
    server = ServerStack(data_dir=tmp_path / "data", port=free_port(), log_path=tmp_path / "server.log")
    server.start()
    alice = User(server, LocalKeys(server.data_dir).mint("alice"))
    try:
        spec = tiny_spec(steps=600, checkpoint_every=100).model_dump(mode="json")
        first = alice.submit(spec)
        queued = alice.submit(tiny_spec(steps=10).model_dump(mode="json"))
        alice.wait_status(first["id"], {"running"}, 90)
        wait_until(lambda: alice.job(first["id"])["progress"]["step"] > 0, 90, "the first progress report")
        assert alice.job(first["id"])["status"] == "running"  # the kill lands mid-job
        server.kill9()  # the injected fault; the worker runs on in its own process group
        server.start()
        for job in (first, queued):
            alice.wait_status(job["id"], {"succeeded", "failed", "cancelled"}, 150)
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
    finally:
        server.stop()
        for job_id in server.job_ids:
            for pid in worker_pids(job_id):
                os.kill(pid, signal.SIGKILL)
    store = SqliteJobStore(server.data_dir / "robotrain.sqlite3")
    assert_truthful(store, {first["id"]: (S.SUCCEEDED, None), queued["id"]: (S.SUCCEEDED, None)})
    for job_id in (first["id"], queued["id"]):
        assert running_attempts(store, job_id) == [1]  # the restart neither lost nor re-ran the running job
