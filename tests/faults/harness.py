"""The stack the fault tests run on, and the invariants every one of them checks.

In-process stack: the real SQLite store and local queue (from the dispatch tests' make_components), the real
Dispatcher (drain + sweep) driven tick by tick by the test, and the ThreadLauncher, which runs the real `run_worker`
(real training) on threads so torch is imported once. Faults about processes use the SubprocessLauncher instead.

Training runs are counted two ways: `TrainingRuns` wraps training.trainer.run in this process (what really trained,
per job and attempt), and `running_attempts` reads the status events (the attempts whose worker began, in any
process). Both must show at most one run per attempt.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import training.trainer
from robotrain.adapters.thread_launcher import ThreadLauncher
from robotrain.control.drain import Drainer
from robotrain.control.loop import Dispatcher
from robotrain.control.sweep import Sweeper
from robotrain.jobs.models import Job, JobStatus
from robotrain.jobs.service import JobService
from robotrain.ports import Components, JobStore
from robotrain.worker.runner import run_worker
from tests.support.components import fast_spec, make_components
from training.spec import TrainSpec

S = JobStatus

# Tiny on purpose: a run takes a fraction of a second once torch is loaded; two checkpoints so a resume has a choice.
FAULT_TRAINING = {"steps": 20, "batch_size": 16, "checkpoint_every": 10, "log_every": 5, "device": "cpu"}


def tiny_spec(**training: Any) -> TrainSpec:
    return fast_spec(
        policy={"type": "mlp", "hidden_dims": [16, 16]},
        dataset={"uri": "builtin://push2d?episodes=5&seed=3"},
        training={**FAULT_TRAINING, **training},
    )


FAST_SETTINGS: dict[str, Any] = {
    "queue_visibility_timeout_s": 1,  # a message left by a failed drain is back within a second
    "queue_max_receives": 5,
    "max_concurrent_jobs": 2,
    "heartbeat_interval_s": 0.3,
    "heartbeat_stale_s": 3.0,
    "progress_interval_s": 0.2,
    "drain_interval_s": 0.2,
    "max_attempts": 3,
    "max_checkpoint_saves": 1_000_000,  # some runs are long on purpose (cut short by a timeout or a kill)
}


class TrainingRuns:
    """Counts calls of training.trainer.run per (job id, attempt) in this process; the worker imports `run` at call
    time, so it calls this wrapper, which calls the real trainer."""

    def __init__(self) -> None:
        self.real = training.trainer.run
        self._lock = threading.Lock()
        self.calls: Counter[tuple[str, int]] = Counter()

    def __call__(self, spec, out_dir, reporter=None, **kwargs):
        with self._lock:
            self.calls[(Path(out_dir).name, getattr(reporter, "attempt", -1))] += 1
        return self.real(spec, out_dir, reporter, **kwargs)

    def of(self, job_id: str) -> list[int]:
        """The attempts of `job_id` that trained, once per run (an attempt listed twice ran twice)."""
        return sorted(attempt for (job, attempt), n in self.calls.items() if job == job_id for _ in range(n))


@dataclass
class Stack:
    components: Components
    service: JobService
    dispatcher: Dispatcher
    runs: TrainingRuns
    store: JobStore  # the real store underneath any injection wrapper: the test's own reads never hit a fault

    def tick(self) -> None:
        self.dispatcher.drain_once()
        self.dispatcher.sweep()

    def run_until(self, predicate: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not reached after {timeout_s} s")
            self.tick()
            time.sleep(0.05)

    def run_until_terminal(self, job_ids: Iterable[str], timeout_s: float = 60) -> list[Job]:
        ids = list(job_ids)
        deadline = time.monotonic() + timeout_s
        while True:
            jobs = [self.store.get(job_id) for job_id in ids]
            if all(job is not None and job.status.is_terminal for job in jobs):
                return jobs
            if time.monotonic() > deadline:
                raise AssertionError(f"not terminal after {timeout_s} s: {[(j.id, j.status) for j in jobs if j]}")
            self.tick()
            time.sleep(0.05)


def build_stack(tmp_path: Path, runs: TrainingRuns, *, wrap: Callable[[Components], None] | None = None,
                **settings: Any) -> Stack:  # fmt: skip
    launcher = ThreadLauncher(2)
    components = make_components(tmp_path, launcher, **{**FAST_SETTINGS, **settings})
    launcher.bind(lambda job_id, attempt: run_worker(components, job_id, attempt))
    real_store = components.store
    if wrap is not None:
        wrap(components)  # put injection wrappers around the real adapters
    dispatcher = Dispatcher(
        components,
        drainer=Drainer(components, launch_backoff_base_s=0),
        sweeper=Sweeper(components, unsent_grace_s=0, release_grace_s=0),
    )
    return Stack(
        components=components, service=JobService(components), dispatcher=dispatcher, runs=runs, store=real_store
    )


def running_attempts(store: JobStore, job_id: str) -> list[int]:
    """The attempts whose worker began (its starting → running compare-and-set won), from the status events."""
    return [
        event.data["attempt"]
        for event in store.list_events(job_id, limit=10_000)
        if event.kind == "status" and event.data.get("status") == "running"
    ]


def assert_truthful(
    store: JobStore,
    expected: dict[str, tuple[JobStatus, str | None]],
    runs: TrainingRuns | None = None,
    trained: dict[str, int] | None = None,
) -> None:
    """No job lost, none run twice, each terminal with the expected status and error code (None: no error)."""
    for job_id, (status, code) in expected.items():
        job = store.get(job_id)
        assert job is not None, f"{job_id} was lost"
        assert job.status is status, (job_id, job.status, job.error)
        assert (job.error.code if job.error else None) == code, (job_id, job.error)
        if code is not None:
            assert job.error.message, f"{job_id} failed without a message"
        if status is S.SUCCEEDED:
            assert job.result is not None and job.result["steps"] == job.progress.total_steps
        began = running_attempts(store, job_id)
        assert len(began) == len(set(began)), f"{job_id}: an attempt began twice: {began}"
        if runs is not None:
            attempts = runs.of(job_id)
            assert len(attempts) == len(set(attempts)), f"{job_id}: an attempt trained twice: {attempts}"
            if trained is not None:
                assert len(attempts) == trained.get(job_id, 0), (job_id, attempts)
