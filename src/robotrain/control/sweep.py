"""The sweep: the reconciler that makes every accepted job end somewhere truthful.

- Outbox (the rule is lifecycle.send_created's): a job is stored already stamped as sent and its request sends it;
  when that send fails the stamp is withdrawn. So a queued job with enqueued_at null is one whose send failed: it is
  sent now; the store is asked for unsent jobs only, so a backlog of sent ones cannot hide them, and each sweep
  covers the next `batch`. A queued job stamped long ago (`resend_after_s`) while there is free capacity is sent
  again: its message may have dead-lettered, or its request died (or could not withdraw the stamp) between storing
  it and sending it. A second message for the same job is harmless (the drain claims once).
- Compute of ended jobs: a cancelled or failed job that still has a launch handle `release_grace_s` after it ended is
  checked with the launcher. Still alive (a cancel whose launcher.cancel failed or was ignored) → cancel again.
  Ended → the handle is cleared and a "compute released" event records when that was seen. Can't tell → next sweep.
- Lost workers: a starting or running job with no sign of life for `heartbeat_stale_s` (heartbeat, or its last write
  while starting) is checked with the launcher. Alive → left alone. Ended, or no handle → requeued (running/starting →
  queued; the next claim increments the attempt and the worker resumes from the job's last checkpoint), unless this
  was its `max_attempts`-th lost worker: then failed worker_lost. Can't tell (the platform is unreachable) → asked
  again next sweep, until the job has shown no sign of life for `liveness_unknown_max_s`: then it is treated as lost
  (and its compute is asked to stop, in case it still runs). The bound is measured from the job row alone, so it
  holds across sweeps in different processes and restarts; an outage shorter than it requeues nothing.
- Idempotency keys older than `idempotency_ttl_s` (24 h: what the API promises) are forgotten, at most hourly.
- Timeouts, as a backstop for a worker that cannot enforce its own: a running job past compute.timeout_minutes plus
  `heartbeat_stale_s` fails with timeout and its compute is stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from robotrain.jobs.lifecycle import TRANSIENT_LAUNCHER_ERRORS, apply_transition, enqueue, stop_compute
from robotrain.jobs.models import ErrorCode, EventKind, Job, JobChanges, JobError, JobStatus, utcnow
from robotrain.ports import Components

log = logging.getLogger(__name__)

# Status-event reasons that count as a lost worker towards max_attempts.
LOST_REASONS = frozenset({"worker_lost", "preempted"})
_EVENT_PAGE = 500


@dataclass
class SweepReport:
    resent: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    alive: list[str] = field(default_factory=list)  # stale but their worker still runs
    unknown: list[str] = field(default_factory=list)  # stale, and the launcher cannot tell whether their worker runs
    cancel_retried: list[str] = field(default_factory=list)  # ended jobs whose worker still ran: stopped again
    released: list[str] = field(default_factory=list)  # ended jobs whose worker is now seen gone
    forgotten_keys: int = 0


def lost_workers(components: Components, job_id: str) -> int:
    """How many times this job was requeued because its worker was lost (from its status events)."""
    count, after = 0, 0
    while True:
        events = components.store.list_events(job_id, after=after, limit=_EVENT_PAGE)
        for event in events:
            if event.kind is EventKind.STATUS and event.data.get("reason") in LOST_REASONS:
                count += 1
        if len(events) < _EVENT_PAGE:
            return count
        after = events[-1].id


class Sweeper:
    def __init__(
        self,
        components: Components,
        *,
        resend_after_s: float | None = None,
        unsent_grace_s: float = 5.0,
        batch: int = 500,
        idempotency_ttl_s: float = 24 * 3600,
        release_grace_s: float = 15.0,
        clock: Callable[[], datetime] = utcnow,
    ):
        self._c = components
        self._clock = clock  # the sweep's "now" (UTC); tests move it instead of sleeping
        self._settings = components.settings
        s = self._settings
        # Long enough that a message still in its launch backoff or visibility timeout is not duplicated needlessly.
        self._resend_after = timedelta(
            seconds=resend_after_s
            if resend_after_s is not None
            else s.queue_visibility_timeout_s * s.queue_max_receives + s.heartbeat_stale_s
        )
        # A job marked unsent this recently had its send fail just now: give the queue a moment.
        self._unsent_grace = timedelta(seconds=unsent_grace_s)
        self._batch = batch
        # Longer than a launcher's own SIGTERM-then-SIGKILL grace, so a cancel in progress is not repeated.
        self._release_grace = timedelta(seconds=release_grace_s)
        self._idempotency_ttl = timedelta(seconds=idempotency_ttl_s)
        self._forget_every = timedelta(seconds=min(3600.0, idempotency_ttl_s))
        self._last_forget: datetime | None = None

    def sweep(self) -> SweepReport:
        report = SweepReport()
        self._resend_unsent(report)
        self._recover_stale(report)
        self._release_compute(report)
        self._forget_old_idempotency_keys(report)
        return report

    def _forget_old_idempotency_keys(self, report: SweepReport) -> None:
        now = self._clock()
        if self._last_forget is not None and now - self._last_forget < self._forget_every:
            return
        self._last_forget = now
        report.forgotten_keys = self._c.store.forget_idempotency_keys(now - self._idempotency_ttl)

    def _resend_unsent(self, report: SweepReport) -> None:
        now = self._clock()
        store = self._c.store
        for job in store.find(statuses={JobStatus.QUEUED}, unsent=True, limit=self._batch):
            if now - job.updated_at >= self._unsent_grace:
                self._send(job, report)
        if store.count(statuses=JobStatus.active()) >= self._settings.max_concurrent_jobs:
            return  # no room: a message waiting that long is most likely just waiting
        for job in store.find(statuses={JobStatus.QUEUED}, limit=self._batch):
            if job.enqueued_at is not None and now - job.enqueued_at >= self._resend_after:
                self._send(job, report)

    def _send(self, job: Job, report: SweepReport) -> None:
        sent = enqueue(self._c, job)
        if sent.enqueued_at is not None and sent.enqueued_at != job.enqueued_at:
            report.resent.append(job.id)

    def _release_compute(self, report: SweepReport) -> None:
        now = self._clock()
        ended = {JobStatus.CANCELLED, JobStatus.FAILED}
        for job in self._c.store.find(statuses=ended, holding_compute=True, limit=self._batch):
            if job.finished_at is not None and now - job.finished_at < self._release_grace:
                continue
            alive = self._is_alive(job)
            if alive is None:
                continue
            if alive:
                log.warning(
                    "%s is %s but its worker %s still runs; stopping it again", job.id, job.status, job.launch_handle
                )
                stop_compute(self._c, job.launch_handle)
                self._c.store.append_event(
                    job.id,
                    EventKind.LOG,
                    "the worker was still running after the job ended; stopping it again",
                    {"launch_handle": job.launch_handle},
                )
                report.cancel_retried.append(job.id)
                continue
            cleared = self._c.store.update(
                job.id, JobChanges(launch_handle=None), expected={job.status}, expected_attempt=job.attempt
            )
            if cleared is not None:
                self._c.store.append_event(
                    job.id,
                    EventKind.LOG,
                    "compute released: the worker has stopped",
                    {"released_at": now.isoformat(), "attempt": job.attempt},
                )
                report.released.append(job.id)

    def _recover_stale(self, report: SweepReport) -> None:
        now = self._clock()
        stale_after = timedelta(seconds=self._settings.heartbeat_stale_s)
        unknown_max = timedelta(seconds=self._settings.liveness_unknown_max_s)
        for job in self._c.store.find(statuses=JobStatus.active(), limit=self._batch):
            if self._past_timeout(job, now):
                self._fail_timeout(job, report)
                continue
            last_sign = job.heartbeat_at if job.status is JobStatus.RUNNING and job.heartbeat_at else job.updated_at
            silent_for = now - last_sign
            if silent_for < stale_after:
                continue
            alive = self._is_alive(job)
            if alive is True:
                report.alive.append(job.id)
            elif alive is False:
                self._worker_lost(job, report)
            elif silent_for < unknown_max:
                # The platform cannot say (e.g. Modal unreachable): requeuing now would train the job twice if the
                # worker still runs, so wait for an answer, or for the bound.
                log.warning("%s looks stale but its launcher cannot tell whether it runs; asking again later", job.id)
                report.unknown.append(job.id)
            else:
                self._liveness_unknown_too_long(job, silent_for, report)

    def _past_timeout(self, job: Job, now: datetime) -> bool:
        if job.status is not JobStatus.RUNNING or job.started_at is None:
            return False
        limit = timedelta(minutes=job.compute.timeout_minutes, seconds=self._settings.heartbeat_stale_s)
        return now - job.started_at > limit

    def _fail_timeout(self, job: Job, report: SweepReport) -> None:
        minutes = job.compute.timeout_minutes
        error = JobError(code=ErrorCode.TIMEOUT, message=f"the job ran past compute.timeout_minutes ({minutes})")
        if apply_transition(self._c.store, job, JobStatus.FAILED, error=error) is not None:
            report.failed.append(job.id)
            stop_compute(self._c, job.launch_handle)

    def _is_alive(self, job: Job) -> bool | None:
        if not job.launch_handle:
            return False  # never launched, or the drain died before recording the handle
        try:
            return self._c.launcher.is_alive(job.launch_handle)
        except TRANSIENT_LAUNCHER_ERRORS as exc:
            log.warning("cannot ask about the worker of %s: %s", job.id, exc)
            return None
        except Exception:  # noqa: BLE001 - one job's platform error must not stop the sweep of every other job
            log.exception("asking about the worker of %s raised; treating its liveness as unknown", job.id)
            return None

    def _liveness_unknown_too_long(self, job: Job, silent_for: timedelta, report: SweepReport) -> None:
        """No sign of life for longer than liveness_unknown_max_s and the launcher still cannot tell: lost. Its compute
        is asked to stop in case it still runs (a launcher this unreachable may refuse; the old worker's writes are
        fenced out by the new attempt either way)."""
        seconds = int(silent_for.total_seconds())
        log.warning(
            "%s attempt %d: no sign of life for %d s and its launcher cannot tell whether it runs; treating it as lost",
            job.id,
            job.attempt,
            seconds,
        )
        if self._worker_lost(job, report, may_still_run=True):
            self._c.store.append_event(
                job.id,
                EventKind.LOG,
                f"attempt {job.attempt} treated as lost: no sign of life for {seconds} s and the launcher could not "
                "tell whether its worker runs",
                {"attempt": job.attempt, "silent_s": seconds},
            )

    def _worker_lost(self, job: Job, report: SweepReport, *, may_still_run: bool = False) -> bool:
        """Requeue the job (or fail it worker_lost after max_attempts lost workers); False when it moved on meanwhile."""
        lost = lost_workers(self._c, job.id) + 1
        if lost >= self._settings.max_attempts:
            error = JobError(
                code=ErrorCode.WORKER_LOST,
                message=f"the worker stopped without finishing the job, {lost} times (attempt {job.attempt})",
            )
            if apply_transition(self._c.store, job, JobStatus.FAILED, error=error) is None:
                return False
            report.failed.append(job.id)
            stop_compute(self._c, job.launch_handle)
            return True
        requeued = apply_transition(
            self._c.store, job, JobStatus.QUEUED, reason="worker_lost", launch_handle=None, enqueued_at=None
        )
        if requeued is None:
            return False  # it moved on meanwhile (finished, cancelled, or its heartbeat came back)
        log.warning("worker of %s attempt %d was lost; requeued", job.id, job.attempt)
        report.requeued.append(job.id)
        if may_still_run:
            stop_compute(self._c, job.launch_handle)
        enqueue(self._c, requeued)
        return True
