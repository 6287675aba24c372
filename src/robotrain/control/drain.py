"""The drain: turn queue messages into launched workers, exactly once per job attempt.

Each receive takes up to ten messages (SQS's most), as many as there are free slots, and handles them as one batch
in four round trips whatever its size: the receive, one store call that claims every job of the batch still queued
(`claim_batch`: queued -> starting within the global and per-user caps, atomically across dispatchers, with the
status events), one store call that records the launched workers' handles (fenced on each attempt), and one batched
delete. The last two are independent, so the queue's work (this batch's delete, then the next batch's receive) runs
on a helper thread while the store records the launches: per batch the drain waits for one store call plus the
slower of a store call and the queue's delete-and-receive. A job that is not queued (duplicate message, cancelled
meanwhile, already claimed) only costs its message. The same code runs locally and against SQS.

Fault handling, per message:
- poison: a body this service did not write, a message for a job that does not exist, or one whose claim raised an
  unexpected error, is left in the queue: it is delivered again until the queue's max_receives moves it to the
  dead-letter queue, where an operator can see it. On its last delivery, a job it names that is still waiting to run
  (queued, or starting with no worker) is ended failed with code poison_message, so it is never stuck. A batch claim
  that raises is retried one message at a time, so one bad row cannot take the rest of its batch down with it;
- a job held back by a cap is hidden for a short backoff; a message about to use its last delivery that way is
  replaced by a fresh one, so waiting never sends a healthy job's message to the dead-letter queue;
- a launch that raises a classified transient error (TRANSIENT_LAUNCHER_ERRORS) puts the job back to queued and hides
  the message with exponential backoff; on the message's `queue_max_receives`-th delivery the job fails launch_failed.
  The batch's jobs not tried yet go back to queued too and their messages become visible for the next drain;
- any other exception from the launcher is not retried: the job fails launch_failed at once, with the traceback logged
  (retrying a programming error only delays the same failure, and a job must never stay stuck in starting);
- the store or queue being unreachable (DEPENDENCY_DOWN_ERRORS) ends this drain and leaves the message; it comes back
  after its visibility timeout.

Receiving: SQS's short polling samples a subset of its servers and may answer empty while messages wait, so a drain
over SQS long-polls (`receive_wait_s` >= 1 queries every server) and stops at the first empty answer, which is then
true. A drain kicked for one job (`drain_once(wait_for=job_id)`: the API's kick after a submit) keeps receiving until
it has received that job's message, the job is no longer waiting for one (claimed by an earlier drain, cancelled,
or never sent: the sweep re-sends it), or `kick_wait_s` has passed, so a message that is not yet visible when the
kick arrives still starts at once instead of at the next scheduled drain. The embedded queue (one SQLite file) never
answers empty while a message is visible, so the local dispatch loop polls without waiting and stops promptly.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum

from robotrain.jobs.claims import Capped, CapScope, ClaimBatch, Claimed, LaunchRecord, Missing, NotQueued
from robotrain.jobs.lifecycle import (
    DEPENDENCY_DOWN_ERRORS,
    TRANSIENT_LAUNCHER_ERRORS,
    apply_transition,
    claim_batch,
    enqueue,
    stop_compute,
)
from robotrain.jobs.models import ErrorCode, EventKind, Job, JobError, JobStatus, NewEvent
from robotrain.ports import Components, QueueMessage, ReceiptHandleInvalid

log = logging.getLogger(__name__)

MAX_BATCH = 10  # SQS's most messages per receive
_JOB_ID = re.compile(r"^job_[0-9a-z]{26}$")
_JOB_ID_ANYWHERE = re.compile(r"job_[0-9a-z]{26}")


class _Outcome(Enum):
    CONTINUE = "continue"
    STOP = "stop"  # the launcher is failing: leave the rest for a later drain


@dataclass
class _Batch:
    """What handling a batch left to finish: the messages to delete, the launches to record."""

    outcome: _Outcome
    active: int | None  # starting + running jobs as the claim counted them; None when not claimed as one batch
    deletes: list[QueueMessage] = field(default_factory=list)
    started: list[tuple[QueueMessage, Job, str]] = field(default_factory=list)  # launched: message, job, handle


@dataclass
class DrainReport:
    received: int = 0
    launched: list[str] = field(default_factory=list)
    skipped: int = 0  # duplicates and messages for jobs that are no longer queued
    poison: int = 0  # left to dead-letter: malformed, for a missing job, or their handling raised
    deferred: int = 0  # left in the queue for later: capacity, per-user cap, launch backoff, a dependency down
    launch_failures: int = 0
    failed: list[str] = field(default_factory=list)  # jobs this drain ended failed (launch gave up)
    at_capacity: bool = False
    receives: int = 0  # calls to the queue's receive
    waited_for: str | None = None  # the job this drain was kicked for
    waited_for_seen: bool = False  # its message was received by this drain


def named_job(body: str) -> str | None:
    """The first job id anywhere in a body, parsable or not: the job a poison message was probably about."""
    match = _JOB_ID_ANYWHERE.search(body)
    return match.group() if match else None


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
        receive_wait_s: float = 0.0,
        kick_wait_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        """`receive_wait_s`: the long-poll wait of each receive (0 for the embedded queue, >= 1 for SQS);
        `kick_wait_s`: how long a drain kicked for a job keeps receiving until it sees that job (module doc)."""
        self._c = components
        self._settings = components.settings
        self._backoff_base_s = launch_backoff_base_s
        self._backoff_max_s = launch_backoff_max_s
        self._max_rounds = max_rounds
        self._receive_wait_s = receive_wait_s
        self._kick_wait_s = kick_wait_s
        self._clock = clock
        # One drain at a time per process keeps its report and batches simple; the caps hold without it (the store's
        # claim is atomic across processes).
        self._lock = threading.Lock()

    @property
    def capacity_backoff_s(self) -> int:
        return max(1, math.ceil(self._settings.drain_interval_s))

    def launch_backoff_s(self, receive_count: int) -> int:
        """2, 4, 8, ... seconds (base × 2^(n-1)), capped: the visibility given to a message whose launch failed."""
        return int(min(self._backoff_max_s, self._backoff_base_s * 2 ** max(0, receive_count - 1)))

    def drain_once(self, *, wait_for: str | None = None) -> DrainReport:
        """Receive and handle messages until the queue answers empty, capacity is reached or `max_rounds` batches
        were handled; kicked for `wait_for`, keep receiving until that job's message is seen (module doc)."""
        report = DrainReport(waited_for=wait_for)
        with self._lock, ThreadPoolExecutor(max_workers=1, thread_name_prefix="robotrain-drain-queue") as helper:
            deadline = self._clock() + self._kick_wait_s
            waiting = wait_for is not None and self._kick_wait_s > 0
            try:
                free = self._settings.max_concurrent_jobs - self._c.store.count(statuses=JobStatus.active())
                waiting = self._keep_waiting(waiting, wait_for, deadline)
                messages = self._receive(free, waiting, report)
                rounds = 0
                while rounds < self._max_rounds:
                    if free <= 0:
                        report.at_capacity = True
                        break
                    if not messages:
                        if not waiting:
                            break
                        # an empty answer while waiting for the kicked job: ask again, waiting on if its time is not
                        # up, or once more as a drain that was not kicked
                        waiting = self._keep_waiting(waiting, wait_for, deadline)
                        messages = self._receive(free, waiting, report)
                        continue
                    report.received += len(messages)
                    if wait_for is not None and any(parse_message(m.body) == wait_for for m in messages):
                        report.waited_for_seen, waiting = True, False
                    rounds += 1
                    batch = self._handle_batch(messages, report)
                    if batch.active is not None:  # the claim counted the active jobs: no extra round trip for it
                        free = self._settings.max_concurrent_jobs - batch.active
                    go_on = batch.outcome is _Outcome.CONTINUE and rounds < self._max_rounds
                    # The queue's part and the store's part of finishing this batch, side by side
                    queue_part = helper.submit(
                        self._delete_then_receive, batch.deletes, free if go_on else 0, waiting, report
                    )
                    self._record(batch.started, report)
                    messages = queue_part.result()
                    if not go_on:
                        break
            except DEPENDENCY_DOWN_ERRORS as exc:
                log.warning("drain stopped: %s; messages not handled come back after their visibility timeout", exc)
        return report

    def _keep_waiting(self, waiting: bool, job_id: str | None, deadline: float) -> bool:
        """Whether a drain kicked for `job_id` should keep receiving for it: it still is, its time is not up, and the
        job is still queued with its message sent (claimed, cancelled or unsent, there is no message to wait for)."""
        if not waiting or job_id is None or self._clock() >= deadline:
            return False
        job = self._c.store.get(job_id)
        return job is not None and job.status is JobStatus.QUEUED and job.enqueued_at is not None

    def _receive(self, free: int, waiting: bool, report: DrainReport) -> list[QueueMessage]:
        """Receive only as many as could start: a message received while at capacity would burn one of its
        deliveries and end in the dead-letter queue for no fault of its own."""
        if free <= 0:
            return []
        report.receives += 1
        return self._c.queue.receive(
            max_messages=min(MAX_BATCH, free),
            visibility_timeout=self._settings.queue_visibility_timeout_s,
            wait_seconds=max(self._receive_wait_s, 1.0) if waiting else self._receive_wait_s,
        )

    def _delete_then_receive(
        self, deletes: list[QueueMessage], free: int, waiting: bool, report: DrainReport
    ) -> list[QueueMessage]:
        self._delete(deletes)
        return self._receive(free, waiting, report)

    def _handle_batch(self, messages: list[QueueMessage], report: DrainReport) -> _Batch:
        """Claim the batch's jobs in one store call and launch the claimed ones; what is left is recording the
        launches (one store call) and deleting the handled messages (one queue call)."""
        parsed: list[tuple[QueueMessage, str]] = []
        for message in messages:
            job_id = parse_message(message.body)
            if job_id is None:
                self._poison_safely(message, "the body is not a message this service sends", report)
            else:
                parsed.append((message, job_id))
        if not parsed:
            return _Batch(_Outcome.CONTINUE, None)
        try:
            claims = claim_batch(
                self._c.store,
                [job_id for _, job_id in parsed],
                max_active=self._settings.max_concurrent_jobs,
                max_active_per_user=self._settings.max_running_jobs_per_user,
            )
        except DEPENDENCY_DOWN_ERRORS:
            report.deferred += len(parsed)
            raise
        except Exception as exc:  # noqa: BLE001 - one bad message must not stop the drain (module doc)
            return self._claim_raised(parsed, exc, report)
        batch = _Batch(_Outcome.CONTINUE, claims.active)
        to_launch = self._sort_claims(parsed, claims, batch.deletes, report)
        batch.outcome = self._launch_all(to_launch, batch, report)
        return batch

    def _claim_raised(self, parsed: list[tuple[QueueMessage, str]], exc: Exception, report: DrainReport) -> _Batch:
        """The batch claim raised a bug-class error (a row that does not parse, a store that answers nonsense):
        nothing was claimed, so each message is handled (and finished) on its own and only the one that raises is
        poison."""
        if len(parsed) == 1:
            message = parsed[0][0]
            log.exception("handling queue message %s raised; leaving it to be redelivered", message.message_id)
            self._poison_safely(message, f"handling it raised {type(exc).__name__}: {exc}", report)
            return _Batch(_Outcome.CONTINUE, None)
        log.exception("claiming a batch of %d jobs raised; handling its messages one at a time", len(parsed))
        active: int | None = None
        for index, (message, _) in enumerate(parsed):
            single = self._handle_batch([message], report)
            self._record(single.started, report)
            self._delete(single.deletes)
            active = single.active if single.active is not None else active
            if single.outcome is _Outcome.STOP:
                rest = [other for other, _ in parsed[index + 1 :]]
                for other in rest:
                    self._hide(other, 0)  # received but not looked at: visible again for the next drain
                report.deferred += len(rest)
                return _Batch(_Outcome.STOP, active)
        return _Batch(_Outcome.CONTINUE, active)

    def _sort_claims(
        self,
        parsed: list[tuple[QueueMessage, str]],
        claims: ClaimBatch,
        deletes: list[QueueMessage],
        report: DrainReport,
    ) -> list[tuple[QueueMessage, Job]]:
        """What each message's claim means: the claimed jobs to launch (one message each), the messages to delete
        (jobs no longer queued, further messages for a job this batch already handled), to poison or to defer."""
        to_launch: list[tuple[QueueMessage, Job]] = []
        handled: set[str] = set()
        for message, job_id in parsed:
            outcome = claims.outcomes[job_id]
            if isinstance(outcome, Missing):
                self._poison_safely(message, f"no job {job_id} exists", report)
                continue
            if job_id in handled:  # a duplicate in the same batch: the first message speaks for the job
                report.skipped += 1
                deletes.append(message)
                continue
            handled.add(job_id)
            match outcome:
                case Claimed(job):
                    to_launch.append((message, job))
                case NotQueued():
                    report.skipped += 1  # a duplicate, or a job cancelled or claimed elsewhere meanwhile
                    deletes.append(message)
                case Capped(scope, job):
                    report.deferred += 1
                    report.at_capacity = report.at_capacity or scope is CapScope.GLOBAL
                    self._defer(message, job, deletes)
        return to_launch

    def _launch_all(self, to_launch: list[tuple[QueueMessage, Job]], batch: _Batch, report: DrainReport) -> _Outcome:
        """Start each claimed attempt's worker; a started one's message is deleted whatever its record finds."""
        deletes = batch.deletes
        outcome = _Outcome.CONTINUE
        for message, claimed in to_launch:
            if outcome is _Outcome.STOP:
                self._put_back(message, claimed, deletes, report)
                continue
            try:
                handle = self._c.launcher.launch(claimed)
            except TRANSIENT_LAUNCHER_ERRORS as exc:
                report.launch_failures += 1
                self._launch_failed(message, claimed, f"{type(exc).__name__}: {exc}", True, deletes, report)
                outcome = _Outcome.STOP  # the launcher is failing: leave the rest of the batch for later
                continue
            except Exception as exc:  # noqa: BLE001 - refused or unclassified: fail the job, do not retry (module doc)
                log.exception(
                    "launching %s attempt %d raised an error that is not retried", claimed.id, claimed.attempt
                )
                report.launch_failures += 1
                self._launch_failed(message, claimed, f"{type(exc).__name__}: {exc}", False, deletes, report)
                continue
            batch.started.append((message, claimed, handle))
            deletes.append(message)
        return outcome

    def _record(self, started: list[tuple[QueueMessage, Job, str]], report: DrainReport) -> None:
        """Record every started worker's handle in one store call, fenced on its attempt; stop the ones whose job
        moved on while they launched."""
        if not started:
            return
        records = [
            LaunchRecord(
                claimed.id,
                claimed.attempt,
                handle,
                NewEvent(EventKind.LOG, f"worker launched for attempt {claimed.attempt}", {"attempt": claimed.attempt}),
            )
            for _, claimed, handle in started
        ]
        recorded = self._c.store.record_launches(records, expected={JobStatus.STARTING, JobStatus.RUNNING})
        for _, claimed, handle in started:
            if claimed.id in recorded:
                report.launched.append(claimed.id)
            else:
                # Cancelled (or requeued) while launching: this attempt is no longer wanted, so stop its compute.
                log.info("%s changed while attempt %d was launching; stopping that worker", claimed.id, claimed.attempt)
                stop_compute(self._c, handle)

    def _put_back(self, message: QueueMessage, job: Job, deletes: list[QueueMessage], report: DrainReport) -> None:
        """A claimed job the drain did not try to launch because the launcher is failing: queued again, its message
        visible for the next drain."""
        requeued = apply_transition(
            self._c.store, job, JobStatus.QUEUED, reason="launch deferred: the launcher is failing"
        )
        if requeued is None:  # cancelled meanwhile
            deletes.append(message)
            return
        report.deferred += 1
        self._hide(message, 0)

    def _launch_failed(
        self,
        message: QueueMessage,
        job: Job,
        detail: str,
        retry: bool,
        deletes: list[QueueMessage],
        report: DrainReport,
    ) -> None:
        tries = message.receive_count
        if retry and tries < self._settings.queue_max_receives:
            log.warning("launch of %s failed (try %d): %s; retrying later", job.id, tries, detail)
            requeued = apply_transition(self._c.store, job, JobStatus.QUEUED, reason=f"launch failed ({detail})")
            if requeued is None:  # cancelled meanwhile
                deletes.append(message)
                return
            report.deferred += 1
            self._hide(message, self.launch_backoff_s(tries))
            return
        why = f"after {tries} tries" if retry else "with an error that is not retried"
        error = JobError(code=ErrorCode.LAUNCH_FAILED, message=f"the worker could not be started {why}: {detail}")
        if apply_transition(self._c.store, job, JobStatus.FAILED, error=error) is not None:
            report.failed.append(job.id)
        deletes.append(message)

    def _poison_safely(self, message: QueueMessage, why: str, report: DrainReport) -> None:
        try:
            self._poison(message, why, report)
        except DEPENDENCY_DOWN_ERRORS:
            raise
        except Exception:  # noqa: BLE001 - the job cannot even be read: the dead-letter queue keeps the message
            log.exception("could not end the job named by poison message %s", message.message_id)

    def _poison(self, message: QueueMessage, why: str, report: DrainReport) -> None:
        """Leave the message to be redelivered and, after max_receives deliveries, dead-lettered by the queue. On its
        last delivery, end the job it names if that job is still waiting for this message (module doc)."""
        report.poison += 1
        last = message.receive_count >= self._settings.queue_max_receives
        log.error(
            "poison queue message %s (delivery %d of %d): %s; body %r",
            message.message_id,
            message.receive_count,
            self._settings.queue_max_receives,
            why,
            message.body[:200],
        )
        job_id = named_job(message.body)
        if not last or job_id is None:
            return
        job = self._c.store.get(job_id)
        waiting = job is not None and (
            job.status is JobStatus.QUEUED or (job.status is JobStatus.STARTING and not job.launch_handle)
        )
        if job is None or not waiting:
            return
        error = JobError(
            code=ErrorCode.POISON_MESSAGE,
            message=(
                f"the job's queue message could not be handled in {message.receive_count} deliveries ({why}); "
                "it was moved to the dead-letter queue"
            )[:1000],
        )
        if apply_transition(self._c.store, job, JobStatus.FAILED, error=error) is not None:
            report.failed.append(job.id)

    def _defer(self, message: QueueMessage, job: Job, deletes: list[QueueMessage]) -> None:
        """Hide a message whose job must wait for a cap. Its next delivery would be its last, so replace it with a
        fresh message rather than let waiting alone send it to the dead-letter queue."""
        if message.receive_count < self._settings.queue_max_receives - 1:
            self._hide(message, self.capacity_backoff_s)
            return
        refreshed = enqueue(self._c, job)
        if refreshed.enqueued_at is not None and refreshed.enqueued_at != job.enqueued_at:
            deletes.append(message)
        else:  # the send failed: keep this one (the sweep re-sends a job whose message is gone)
            self._hide(message, self.capacity_backoff_s)

    def _delete(self, messages: list[QueueMessage]) -> None:
        """One batched delete (the queue splits it into calls of ten)."""
        if not messages:
            return
        failed = set(self._c.queue.delete([message.receipt_handle for message in messages]))
        for message in messages:
            if message.receipt_handle in failed:
                # Received again elsewhere since: that delivery finds the job already handled and deletes it.
                log.warning("could not delete message %s; its next delivery is a no-op", message.message_id)

    def _hide(self, message: QueueMessage, seconds: int) -> None:
        try:
            self._c.queue.change_visibility(message.receipt_handle, seconds)
        except ReceiptHandleInvalid:
            log.info("message %s was received again meanwhile; leaving it to that receiver", message.message_id)
