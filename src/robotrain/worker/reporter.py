"""JobReporter: the training library's Reporter, writing to the job store for one attempt of one job.

Every write is fenced on (status running, this attempt): once the job is cancelled, timed out or handed to a newer
attempt, this reporter's writes change nothing and `should_stop()` turns True, so the training loop saves a
checkpoint and returns. A background thread heartbeats every `heartbeat_interval_s`, so a long step or evaluation does
not look like a dead worker to the sweep. A store that blinks (StoreUnavailable) loses a write, never the run.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any

from robotrain.errors import StoreUnavailable
from robotrain.jobs.models import EventKind, Job, JobChanges, JobStatus, MetricPoint, Progress, utcnow
from robotrain.ports import JobStore

log = logging.getLogger(__name__)


class StopReason(StrEnum):
    """Why a run was asked to stop."""

    CANCELLED = "cancelled"  # the job was cancelled (or otherwise ended) by someone else
    SUPERSEDED = "superseded"  # the job went back to the queue; a newer attempt owns it now
    TIMEOUT = "timeout"  # compute.timeout_minutes elapsed since this attempt started
    TERMINATED = "terminated"  # the process was asked to exit (SIGTERM or SIGINT: cancel, preemption, shutdown)


_CHECK_INTERVAL_S = 1.0  # should_stop() is called every step; read the job at most this often


class JobReporter:
    def __init__(
        self,
        store: JobStore,
        job: Job,
        *,
        out_dir: Path,
        heartbeat_interval_s: float,
        progress_interval_s: float = 0.0,
        on_checkpoint: Callable[[], None] | None = None,
        redact: Callable[[str], str] | None = None,
    ):
        if job.status is not JobStatus.RUNNING or job.started_at is None:
            raise ValueError("JobReporter needs the job as it is after its running transition")
        self._store = store
        self.job_id = job.id
        self.attempt = job.attempt
        self._out_dir = out_dir
        self._on_checkpoint = on_checkpoint
        self._redact = redact  # log lines come from training and may name host paths; the user reads them
        self._heartbeat_interval_s = heartbeat_interval_s
        self._progress_interval_s = progress_interval_s
        self.deadline: datetime = job.started_at + timedelta(minutes=job.compute.timeout_minutes)
        self._stop_reason: StopReason | None = None
        self._lock = threading.Lock()
        self._last_check = 0.0
        self._last_progress = -math.inf
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    # --- Reporter protocol -------------------------------------------------------------------------------------

    def progress(self, step: int, total: int, metrics: dict[str, float]) -> None:
        finite = {name: float(value) for name, value in metrics.items() if math.isfinite(value)}
        now = time.monotonic()
        if now - self._last_progress >= self._progress_interval_s or step >= total:
            self._last_progress = now
            self._fenced_write(
                JobChanges(progress=Progress(step=step, total_steps=total, metrics=finite), heartbeat_at=utcnow())
            )
        if finite and self._stop_reason is None:
            points = [MetricPoint(step=step, name=name, value=value) for name, value in finite.items()]
            self._guarded(lambda: self._store.append_metrics(self.job_id, points))

    def checkpoint(self, step: int, path: Path) -> None:
        try:
            relative = Path(path).resolve().relative_to(self._out_dir.resolve()).as_posix()
        except ValueError:
            relative = str(path)
        if self._on_checkpoint is not None:
            self._on_checkpoint()
        self.log(f"checkpoint saved at step {step}: {relative}", {"step": step, "checkpoint": relative})

    def log(self, message: str, data: dict[str, Any] | None = None) -> None:
        if self._stop_reason in (StopReason.SUPERSEDED, StopReason.CANCELLED):
            return  # the job is no longer this attempt's to write to
        if self._redact is not None:
            message = self._redact(message)
        self._guarded(lambda: self._store.append_event(self.job_id, EventKind.LOG, message, data))

    def should_stop(self) -> bool:
        if self._stop_reason is not None:
            return True
        if utcnow() >= self.deadline:
            self._set_stop(StopReason.TIMEOUT)
            return True
        now = time.monotonic()
        if now - self._last_check >= _CHECK_INTERVAL_S:
            self._last_check = now
            self._check_ownership()
        return self._stop_reason is not None

    # --- heartbeats and stopping -------------------------------------------------------------------------------

    @property
    def stop_reason(self) -> StopReason | None:
        return self._stop_reason

    def request_stop(self, reason: StopReason) -> None:
        """Ask the run to stop at its next step (e.g. from a SIGTERM handler)."""
        self._set_stop(reason)

    def heartbeat(self) -> None:
        self._fenced_write(JobChanges(heartbeat_at=utcnow()))

    def __enter__(self) -> JobReporter:
        self._halt.clear()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self.job_id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _beat(self) -> None:
        while not self._halt.wait(self._heartbeat_interval_s):
            self.heartbeat()

    def _set_stop(self, reason: StopReason) -> None:
        with self._lock:
            if self._stop_reason is None:
                self._stop_reason = reason
                log.info("%s attempt %d: stopping (%s)", self.job_id, self.attempt, reason)

    def _fenced_write(self, changes: JobChanges) -> None:
        try:
            updated = self._store.update(
                self.job_id, changes, expected={JobStatus.RUNNING}, expected_attempt=self.attempt
            )
        except StoreUnavailable as exc:
            log.warning("job store unavailable, a progress write was lost: %s", exc)
            return
        if updated is None:
            self._check_ownership()

    def _check_ownership(self) -> None:
        try:
            job = self._store.get(self.job_id)
        except StoreUnavailable as exc:
            log.warning("job store unavailable, cannot check for a cancel: %s", exc)
            return
        if job is None:
            self._set_stop(StopReason.CANCELLED)
            return
        if job.status is JobStatus.RUNNING and job.attempt == self.attempt:
            return
        self._set_stop(
            StopReason.SUPERSEDED
            if job.status is JobStatus.QUEUED or job.attempt != self.attempt
            else StopReason.CANCELLED
        )

    def _guarded(self, write: Callable[[], object]) -> None:
        try:
            write()
        except StoreUnavailable as exc:
            log.warning("job store unavailable, a write was lost: %s", exc)
