"""The lifecycle kernel: every write that moves a job on, shared by the API's service, the drain, the sweep and the
worker, so each status change happens in one place and records itself the same way.

- `apply_transition`: the state machine checks the move and returns a compare-and-set; the store applies it fenced
  on the job's observed status and attempt; a status event records it. A lost race returns None.
- `claim`, `claim_batch`: the drain's queued → starting, done by the store's atomic `JobStore.claim` /
  `claim_many` (so the caps hold across processes) and recorded with the same status event.
- `new_queued_job`, `send_created`: → queued at submit and retry. The row is created already stamped as sent
  (`enqueued_at`), in the same store call as its checks, so the request path then only sends: the outbox rule
  (`send_created`) costs a second store trip only when the send fails.
- `enqueue`: the outbox send of the drain and the sweep: the job's message goes out and `enqueued_at` is stamped;
  an unreachable queue leaves the job for the sweep to send.
- `stop_compute`: asks the launcher to stop a worker whose job is already decided.

The error tuples below are the one classification the kernel retries on; adapters wrap their SDKs' transient errors
into these domain errors (QueueUnavailable, StoreUnavailable, LaunchError), and anything else propagates.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from robotrain.errors import LaunchError, QueueUnavailable, StoreUnavailable
from robotrain.jobs.claims import ClaimBatch
from robotrain.jobs.models import EventKind, Job, JobChanges, JobStatus, NewEvent, utcnow
from robotrain.jobs.state_machine import transition
from robotrain.ports import Components, JobStore

log = logging.getLogger(__name__)

# The queue could not be reached: the job stays stored with enqueued_at null and the sweep sends it later (outbox).
TRANSIENT_QUEUE_ERRORS: tuple[type[Exception], ...] = (QueueUnavailable,)
# A launcher could not start, stop or ask about a worker right now (its adapter classified the platform's error as
# transient): launches are retried with backoff, cancels are repeated by the sweep, liveness is "cannot tell".
TRANSIENT_LAUNCHER_ERRORS: tuple[type[Exception], ...] = (LaunchError,)
# The store or the queue is down: a drain or sweep stops and leaves its messages for their visibility timeout.
DEPENDENCY_DOWN_ERRORS: tuple[type[Exception], ...] = (StoreUnavailable, QueueUnavailable)


def apply_transition(
    store: JobStore, job: Job, target: JobStatus, *, reason: str | None = None, **fields: Any
) -> Job | None:
    """Move `job` to `target` if it is still in the status and attempt observed on `job`; record a status event.

    Returns the updated job, or None when the row changed in between (the caller re-reads and decides again).
    Raises IllegalTransition when the move is never allowed from the observed status."""
    change = transition(job, target, **fields)
    updated = store.update(job.id, change.changes, expected=change.expected, expected_attempt=job.attempt)
    if updated is not None:
        _record(store, job, updated, reason)
    return updated


def claim(store: JobStore, job: Job, *, max_active: int, max_active_per_user: int) -> Job | None:
    """The drain's queued → starting, done by the store's atomic JobStore.claim so the caps on active jobs hold across
    processes (the claim writes the same bookkeeping as `transition(job, STARTING)`: attempt + 1). Recorded like any
    other transition. None when the job is no longer queued or a cap is reached. Raises IllegalTransition from a
    non-queued job."""
    transition(job, JobStatus.STARTING)  # the state machine still decides whether the move is legal
    claimed = store.claim(job.id, max_active=max_active, max_active_per_user=max_active_per_user)
    if claimed is not None:
        _record(store, job, claimed, None)
    return claimed


def claim_batch(store: JobStore, job_ids: Sequence[str], *, max_active: int, max_active_per_user: int) -> ClaimBatch:
    """`claim` for a batch of messages in one store call (JobStore.claim_many): each job still queued is claimed
    within the caps, in order, and recorded with the status event `claim` writes (the store adds the attempt)."""
    event = NewEvent(
        EventKind.STATUS,
        JobStatus.STARTING.value,
        {"status": JobStatus.STARTING.value, "from": JobStatus.QUEUED.value},
    )
    return store.claim_many(job_ids, max_active=max_active, max_active_per_user=max_active_per_user, event=event)


def new_queued_job(
    job_id: str, user_id: str, spec: dict[str, Any], *, name: str, now: datetime, retry_of: str | None = None
) -> tuple[Job, NewEvent]:
    """A job entering the system (submit, retry) and its first status event, for JobStore.submit. `enqueued_at` is
    stamped already: the request sends the message right after the store call (`send_created`)."""
    job = Job(
        id=job_id,
        user_id=user_id,
        name=name,
        status=JobStatus.QUEUED,
        spec=spec,
        retry_of=retry_of,
        created_at=now,
        updated_at=now,
        enqueued_at=now,
    )
    message = JobStatus.QUEUED.value if retry_of is None else f"{JobStatus.QUEUED.value}: retry of {retry_of}"
    return job, NewEvent(EventKind.STATUS, message, {"status": JobStatus.QUEUED.value})


def send_created(components: Components, job: Job) -> Job:
    """The outbox send of a job `new_queued_job` made: one send and, when it works, nothing more.

    When the queue is unreachable the stamp is withdrawn (enqueued_at null, fenced on the job still being queued at
    its attempt), so the sweep's unsent pass sends it within seconds: only this case costs a second store trip. If
    that write fails too, or the process dies before the send, the stamp stays and the sweep's resend pass sends the
    job once it has waited `resend_after` with room to run. So no job is left unsent, and a job is sent twice only
    after a send that failed (a duplicate the drain ignores)."""
    try:
        components.queue.send(job_message(job.id))
    except TRANSIENT_QUEUE_ERRORS as exc:
        log.warning("queue send for %s failed (%s); the sweep will send it", job.id, exc)
        try:
            withdrawn = components.store.update(
                job.id, JobChanges(enqueued_at=None), expected={JobStatus.QUEUED}, expected_attempt=job.attempt
            )
        except StoreUnavailable as store_exc:
            log.warning("could not mark %s unsent (%s); the sweep resends it later", job.id, store_exc)
            return job
        return withdrawn or job
    return job


def _record(store: JobStore, before: Job, after: Job, reason: str | None) -> None:
    """The status event of a transition that was applied: from what, to what, at which attempt, and why."""
    target = after.status
    message = target.value
    if after.error is not None and target is JobStatus.FAILED:
        message = f"failed: {after.error.code}: {after.error.message}"
    elif reason:
        message = f"{target.value}: {reason}"
    data: dict[str, Any] = {"status": target.value, "from": before.status.value, "attempt": after.attempt}
    if reason:
        data["reason"] = reason
    store.append_event(after.id, EventKind.STATUS, message, data)


def job_message(job_id: str) -> str:
    return json.dumps({"job_id": job_id})


def enqueue(components: Components, job: Job) -> Job:
    """Send the job's message and stamp `enqueued_at`. When the queue is unreachable the job keeps enqueued_at null
    and the sweep sends it later; a message sent twice is harmless (the drain claims a job once)."""
    try:
        components.queue.send(job_message(job.id))
    except TRANSIENT_QUEUE_ERRORS as exc:
        log.warning("queue send for %s failed (%s); the sweep will send it again", job.id, exc)
        return job
    try:
        stamped = components.store.update(
            job.id, JobChanges(enqueued_at=utcnow()), expected={JobStatus.QUEUED}, expected_attempt=job.attempt
        )
    except StoreUnavailable as exc:
        # The message is out; the sweep may send a duplicate later, which the drain ignores.
        log.warning("could not stamp enqueued_at on %s: %s", job.id, exc)
        return job
    return stamped or job


def stop_compute(components: Components, handle: str | None) -> None:
    """Ask the launcher to stop a worker. The job's status is already decided; this only releases compute, so it
    never raises: a launcher that cannot be reached now, or that refuses (a platform error that is not transient),
    is logged, and the sweep's compute-release pass asks again while the worker still runs. The worker also stops
    itself when it sees that its job is over."""
    if not handle:
        return
    try:
        components.launcher.cancel(handle)
    except TRANSIENT_LAUNCHER_ERRORS as exc:
        log.warning("could not stop worker %s: %s (the sweep asks again)", handle, exc)
    except Exception:  # noqa: BLE001 - the decision is made and recorded; a refused stop must not undo or hide it
        log.exception("stopping worker %s raised an error that is not transient; the sweep asks again", handle)
