"""The drain: turn queue messages into launched workers, exactly once per job attempt.

For each message: read the job; a job that is not queued (duplicate message, cancelled meanwhile, already claimed)
only costs the message. A queued one is claimed queued → starting by compare-and-set (attempt + 1), launched, its
handle recorded (fenced on that attempt) and the message deleted. The same code runs locally and against SQS.

Fault handling, per message:
- a malformed body or a message for a missing job is deleted and logged (the poison path);
- a launch that raises a classified transient error (LAUNCH_RETRY_ERRORS) puts the job back to queued and hides the
  message with exponential backoff; on the message's `queue_max_receives`-th delivery the job fails launch_failed;
- any other exception from the launcher is not retried: the job fails launch_failed at once, with the traceback logged
  (retrying a programming error only delays the same failure, and a job must never stay stuck in starting);
- the store or queue being unreachable (DEPENDENCY_DOWN_ERRORS) ends this drain and leaves the message; it comes back
  after its visibility timeout.
Anything else is a bug in this code: it propagates out of drain_once, and the DispatchLoop logs it with its traceback
and goes on; the message reappears after its visibility timeout and dead-letters after N deliveries, so one bad
message cannot block the others forever.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from dataclasses import dataclass, field
from enum import Enum

from robotrain.errors import LaunchError, QueueUnavailable, StoreUnavailable
from robotrain.jobs.models import ErrorCode, Job, JobChanges, JobError, JobStatus
from robotrain.jobs.service import apply_transition, stop_compute
from robotrain.ports import QueueMessage, ReceiptHandleInvalid
from robotrain.wiring import Components

log = logging.getLogger(__name__)

LAUNCH_RETRY_ERRORS: tuple[type[BaseException], ...] = (LaunchError, OSError)
DEPENDENCY_DOWN_ERRORS: tuple[type[BaseException], ...] = (StoreUnavailable, QueueUnavailable)

MAX_BATCH = 10  # SQS's most messages per receive
_JOB_ID = re.compile(r"^job_[0-9a-z]{26}$")


class _Outcome(Enum):
    CONTINUE = "continue"
    STOP = "stop"  # leave the rest of the batch for a later drain


@dataclass
class DrainReport:
    received: int = 0
    launched: list[str] = field(default_factory=list)
    skipped: int = 0  # duplicates and messages for jobs that are no longer queued or do not exist
    poison: int = 0
    deferred: int = 0  # left in the queue for later: capacity, per-user cap, launch backoff, a dependency down
    launch_failures: int = 0
    failed: list[str] = field(default_factory=list)  # jobs this drain ended failed (launch gave up)
    at_capacity: bool = False


def parse_message(body: str) -> str | None:
    """The job id in a message body, or None when the body is not one this service sends."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict):
        return None
    job_id = payload.get("job_id")
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        return None
    return job_id


class Drainer:
    def __init__(
        self,
        components: Components,
        *,
        launch_backoff_base_s: float = 2.0,
        launch_backoff_max_s: float = 300.0,
        max_rounds: int = 10,
    ):
        self._c = components
        self._settings = components.settings
        self._backoff_base_s = launch_backoff_base_s
        self._backoff_max_s = launch_backoff_max_s
        self._max_rounds = max_rounds
        # One drain at a time per process: the capacity check and the claims it allows must not interleave.
        self._lock = threading.Lock()

    @property
    def capacity_backoff_s(self) -> int:
        return max(1, math.ceil(self._settings.drain_interval_s))

    def launch_backoff_s(self, receive_count: int) -> int:
        """2, 4, 8, ... seconds (base × 2^(n-1)), capped: the visibility given to a message whose launch failed."""
        return int(min(self._backoff_max_s, self._backoff_base_s * 2 ** max(0, receive_count - 1)))

    def drain_once(self) -> DrainReport:
        report = DrainReport()
        with self._lock:
            try:
                for _ in range(self._max_rounds):
                    free = self._settings.max_concurrent_jobs - self._c.store.count(statuses=JobStatus.active())
                    if free <= 0:
                        report.at_capacity = True
                        break
                    # Receive only as many as could start: a message received while at capacity would burn one of
                    # its deliveries and end in the dead-letter queue for no fault of its own.
                    messages = self._c.queue.receive(
                        max_messages=min(MAX_BATCH, free),
                        visibility_timeout=self._settings.queue_visibility_timeout_s,
                    )
                    if not messages:
                        break
                    report.received += len(messages)
                    if self._handle_batch(messages, report) is _Outcome.STOP:
                        break
            except DEPENDENCY_DOWN_ERRORS as exc:
                log.warning("drain stopped: %s; messages not handled come back after their visibility timeout", exc)
        return report

    def _handle_batch(self, messages: list[QueueMessage], report: DrainReport) -> _Outcome:
        for index, message in enumerate(messages):
            try:
                outcome = self._handle(message, report)
            except DEPENDENCY_DOWN_ERRORS:
                report.deferred += len(messages) - index
                raise
            if outcome is _Outcome.STOP:
                rest = messages[index + 1 :]
                for other in rest:
                    self._hide(other, 0)  # received but not looked at: visible again for the next drain
                report.deferred += len(rest)
                return _Outcome.STOP
        return _Outcome.CONTINUE

    def _handle(self, message: QueueMessage, report: DrainReport) -> _Outcome:
        job_id = parse_message(message.body)
        if job_id is None:
            log.error("deleting a malformed queue message %s: %r", message.message_id, message.body[:200])
            report.poison += 1
            self._delete(message)
            return _Outcome.CONTINUE
        job = self._c.store.get(job_id)
        if job is None or job.status is not JobStatus.QUEUED:
            # A duplicate delivery, a job cancelled or claimed meanwhile, or a job that does not exist: nothing to do.
            report.skipped += 1
            self._delete(message)
            return _Outcome.CONTINUE
        per_user = self._settings.max_active_jobs_per_user
        if self._c.store.count(statuses=JobStatus.active(), user_id=job.user_id) >= per_user:
            report.deferred += 1
            self._hide(message, self.capacity_backoff_s)
            return _Outcome.CONTINUE

        claimed = apply_transition(self._c.store, job, JobStatus.STARTING)
        if claimed is None:  # another drain claimed it, or it was cancelled between our read and the claim
            report.skipped += 1
            self._delete(message)
            return _Outcome.CONTINUE
        if self._c.store.count(statuses=JobStatus.active()) > self._settings.max_concurrent_jobs:
            # Another dispatcher claimed at the same time; give our claim back rather than exceed the cap.
            apply_transition(self._c.store, claimed, JobStatus.QUEUED, reason="over capacity, waiting")
            report.deferred += 1
            report.at_capacity = True
            self._hide(message, self.capacity_backoff_s)
            return _Outcome.STOP

        try:
            handle = self._c.launcher.launch(claimed)
        except LAUNCH_RETRY_ERRORS as exc:
            report.launch_failures += 1
            self._launch_failed(message, claimed, f"{type(exc).__name__}: {exc}", retry=True, report=report)
            return _Outcome.STOP  # the launcher is failing: leave the rest of the batch for later
        except Exception as exc:  # noqa: BLE001 - unclassified launcher failure: fail the job, do not retry (module doc)
            log.exception("launching %s attempt %d raised an unclassified error", claimed.id, claimed.attempt)
            report.launch_failures += 1
            self._launch_failed(message, claimed, f"{type(exc).__name__}: {exc}", retry=False, report=report)
            return _Outcome.CONTINUE

        recorded = self._c.store.update(
            claimed.id,
            JobChanges(launch_handle=handle),
            expected={JobStatus.STARTING, JobStatus.RUNNING},
            expected_attempt=claimed.attempt,
        )
        if recorded is None:
            # Cancelled (or requeued) while launching: this attempt is no longer wanted, so stop its compute.
            log.info("%s changed while attempt %d was launching; stopping that worker", claimed.id, claimed.attempt)
            stop_compute(self._c, handle)
        else:
            self._c.store.append_event(
                claimed.id, "log", f"worker launched for attempt {claimed.attempt}", {"attempt": claimed.attempt}
            )
            report.launched.append(claimed.id)
        self._delete(message)
        return _Outcome.CONTINUE

    def _launch_failed(self, message: QueueMessage, job: Job, detail: str, *, retry: bool, report: DrainReport) -> None:
        tries = message.receive_count
        if retry and tries < self._settings.queue_max_receives:
            log.warning("launch of %s failed (try %d): %s; retrying later", job.id, tries, detail)
            requeued = apply_transition(self._c.store, job, JobStatus.QUEUED, reason=f"launch failed ({detail})")
            if requeued is None:  # cancelled meanwhile
                self._delete(message)
                return
            report.deferred += 1
            self._hide(message, self.launch_backoff_s(tries))
            return
        why = f"after {tries} tries" if retry else "with an error that is not retried"
        error = JobError(code=ErrorCode.LAUNCH_FAILED, message=f"the worker could not be started {why}: {detail}")
        if apply_transition(self._c.store, job, JobStatus.FAILED, error=error) is not None:
            report.failed.append(job.id)
        self._delete(message)

    def _delete(self, message: QueueMessage) -> None:
        failed = self._c.queue.delete([message.receipt_handle])
        if failed:
            # Received again elsewhere since: that delivery finds the job already handled and deletes it.
            log.warning("could not delete message %s; its next delivery is a no-op", message.message_id)

    def _hide(self, message: QueueMessage, seconds: int) -> None:
        try:
            self._c.queue.change_visibility(message.receipt_handle, seconds)
        except ReceiptHandleInvalid:
            log.info("message %s was received again meanwhile; leaving it to that receiver", message.message_id)
