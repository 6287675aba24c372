"""The job service: the rules for submitting, reading, cancelling and retrying jobs, applied through the one state
machine. Routes call it; it calls only ports.

Every status write is `apply_transition`: the state machine checks the move and returns a compare-and-set, the
store applies it fenced on the job's current attempt, and a "status" event records it. A lost race returns None.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robotrain.errors import (
    IdempotencyConflict,
    JobConflict,
    JobNotFound,
    LaunchError,
    QueueUnavailable,
    RateLimited,
    ServiceUnavailable,
    StoreUnavailable,
)
from robotrain.jobs.models import Job, JobChanges, JobEvent, JobStatus, Page, new_job_id, utcnow
from robotrain.jobs.schemas import StatusUpdate
from robotrain.jobs.state_machine import IllegalTransition, transition
from robotrain.ports import Artifact, JobStore
from robotrain.wiring import Components
from training.spec import TrainSpec

__all__ = ["JobService", "StatusUpdate", "apply_transition", "claim", "enqueue", "job_message", "stop_compute"]

log = logging.getLogger(__name__)

# The queue could not be reached: the job stays stored with enqueued_at null and the sweep sends it later (outbox).
TRANSIENT_QUEUE_ERRORS: tuple[type[BaseException], ...] = (QueueUnavailable,)
# Stopping compute failed for a reason the launcher classified as transient; the job is cancelled regardless and the
# worker's own should_stop() notices the cancel within seconds.
TRANSIENT_LAUNCHER_ERRORS: tuple[type[BaseException], ...] = (LaunchError, OSError)

# A lost compare-and-set is retried against a fresh read this many times before giving up with 409.
_CAS_RETRIES = 5
# A concurrent request with the same Idempotency-Key may still be creating its job; wait this long for it.
_IDEMPOTENT_WAIT_S = 2.0
# Statuses that count against a user's cap at submit: everything not finished.
_UNFINISHED = frozenset({JobStatus.QUEUED, JobStatus.STARTING, JobStatus.RUNNING})
# Retry-After for a user at the cap: a guess at how soon one of their jobs ends; they may also cancel one.
_ACTIVE_CAP_RETRY_AFTER_S = 30


def apply_transition(
    store: JobStore, job: Job, target: JobStatus, *, reason: str | None = None, **fields: Any
) -> Job | None:
    """Move `job` to `target` if it is still in the status and attempt observed on `job`; record a status event.

    Returns the updated job, or None when the row changed in between (the caller re-reads and decides again).
    Raises IllegalTransition when the move is never allowed from the observed status."""
    change = transition(job, target, **fields)
    updated = store.update(job.id, change.changes, expected=change.expected, expected_attempt=job.attempt)
    if updated is None:
        return None
    message = target.value
    if updated.error is not None and target is JobStatus.FAILED:
        message = f"failed: {updated.error.code}: {updated.error.message}"
    elif reason:
        message = f"{target.value}: {reason}"
    data: dict[str, Any] = {"status": target.value, "from": job.status.value, "attempt": updated.attempt}
    if reason:
        data["reason"] = reason
    store.append_event(job.id, "status", message, data)
    return updated


def claim(store: JobStore, job: Job, *, max_active: int, max_active_per_user: int) -> Job | None:
    """The drain's queued → starting, done by the store's atomic JobStore.claim so the caps on active jobs hold across
    processes (the claim writes the same bookkeeping as `transition(job, STARTING)`: attempt + 1). Records the status
    event. None when the job is no longer queued or a cap is reached. Raises IllegalTransition from a non-queued job."""
    transition(job, JobStatus.STARTING)  # the state machine still decides whether the move is legal
    claimed = store.claim(job.id, max_active=max_active, max_active_per_user=max_active_per_user)
    if claimed is None:
        return None
    store.append_event(
        job.id, "status", JobStatus.STARTING.value, {"status": "starting", "from": "queued", "attempt": claimed.attempt}
    )
    return claimed


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
    """Ask the launcher to stop a worker. The job's status is already decided; this only releases compute."""
    if not handle:
        return
    try:
        components.launcher.cancel(handle)
    except TRANSIENT_LAUNCHER_ERRORS as exc:
        log.warning("could not stop worker %s: %s (it stops itself when it sees the job is over)", handle, exc)


def _request_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def default_job_name(spec: TrainSpec) -> str:
    dataset = spec.dataset.uri.split("?", 1)[0]
    return f"{spec.policy.type} on {dataset}"


class JobService:
    def __init__(self, components: Components, *, kick: Callable[[], None] | None = None):
        self._components = components
        self._store = components.store
        self._kick = kick

    # --- commands ----------------------------------------------------------------------------------------------

    def submit(self, user_id: str, spec: TrainSpec, *, idempotency_key: str | None = None) -> Job:
        """Store a queued job, send its message, kick the drain. With an Idempotency-Key the first job for that key
        (and the same spec) is returned again; the same key with another spec is IdempotencyConflict."""
        spec_json = spec.model_dump(mode="json")
        job_id = new_job_id()
        if idempotency_key is not None:
            request_hash = _request_hash(spec_json)
            # A replay answers with the first job even when the user is at the cap now.
            stored = self._store.lookup_idempotency_key(user_id, idempotency_key)
            if stored is not None and stored[0] == request_hash:
                return self._wait_for_idempotent_job(user_id, stored[1])
        # Checked before the key is remembered, so a refused submit leaves no key behind pointing at no job.
        self._check_active_cap(user_id)
        if idempotency_key is not None:
            stored_hash, stored_job_id = self._store.remember_idempotency_key(
                user_id, idempotency_key, request_hash, job_id
            )
            if stored_hash != request_hash:
                raise IdempotencyConflict("this Idempotency-Key was already used with a different request body")
            if stored_job_id != job_id:
                return self._wait_for_idempotent_job(user_id, stored_job_id)
        return self._create_and_enqueue(user_id, spec_json, name=spec.name or default_job_name(spec), job_id=job_id)

    def cancel(self, user_id: str, job_id: str) -> Job:
        """Cancel a queued job at once; cancel a starting or running one and stop its worker. 409 when terminal."""
        job = self.get(user_id, job_id)
        for _ in range(_CAS_RETRIES):
            if job.status.is_terminal:
                raise JobConflict(f"job {job_id} is already {job.status.value}; only active jobs can be cancelled")
            updated = apply_transition(self._store, job, JobStatus.CANCELLED, reason="cancelled by the user")
            if updated is not None:
                # The row may carry a handle recorded after our read; use the newest one.
                stop_compute(self._components, updated.launch_handle or job.launch_handle)
                return updated
            job = self.get(user_id, job_id)
        raise JobConflict(f"job {job_id} kept changing while being cancelled; try again")

    def retry(self, user_id: str, job_id: str) -> Job:
        """A new queued job with the same spec and `retry_of` = the old id. Only from failed or cancelled."""
        job = self.get(user_id, job_id)
        if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise JobConflict(f"job {job_id} is {job.status.value}; only failed or cancelled jobs can be retried")
        self._check_active_cap(user_id)
        return self._create_and_enqueue(user_id, job.spec, name=job.name, job_id=new_job_id(), retry_of=job.id)

    def set_status(self, job_id: str, update: StatusUpdate) -> Job:
        """Internal: move a job on for a worker that runs elsewhere. 404 when missing, 409 when illegal."""
        fields: dict[str, Any] = {
            name: getattr(update, name) for name in ("error", "progress", "result") if name in update.model_fields_set
        }
        for _ in range(_CAS_RETRIES):
            job = self._store.get(job_id)
            if job is None:
                raise JobNotFound(job_id)
            try:
                updated = apply_transition(
                    self._store, job, update.status, reason="set by an internal caller", **fields
                )
            except IllegalTransition as exc:
                raise JobConflict(str(exc)) from None
            if updated is not None:
                if update.status is JobStatus.CANCELLED:
                    stop_compute(self._components, updated.launch_handle)
                return updated
        raise JobConflict(f"job {job_id} kept changing; try again")

    # --- readiness ---------------------------------------------------------------------------------------------

    def readiness(self) -> dict[str, str]:
        """Each dependency's state for GET /readyz: "ok", "unavailable" (its ping raised ServiceUnavailable; the
        reason is logged, not shown, since the route needs no auth), or "unchecked" for an adapter without ping().
        Never raises for an outage: the server keeps serving what it can while a dependency is down."""
        checks: dict[str, str] = {}
        for name, adapter in (("store", self._store), ("queue", self._components.queue)):
            ping = getattr(adapter, "ping", None)
            if ping is None:
                checks[name] = "unchecked"
                continue
            try:
                ping()
            except ServiceUnavailable as exc:
                log.warning("readiness: the %s is unavailable: %s", name, exc.message)
                checks[name] = "unavailable"
            else:
                checks[name] = "ok"
        return checks

    # --- queries -----------------------------------------------------------------------------------------------

    def get(self, user_id: str, job_id: str) -> Job:
        job = self._store.get(job_id, user_id=user_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def list(
        self, user_id: str, *, status: JobStatus | None = None, limit: int = 20, cursor: str | None = None
    ) -> Page:
        return self._store.list(user_id=user_id, status=status, limit=limit, cursor=cursor)

    def events(self, user_id: str, job_id: str, *, after: int = 0, limit: int = 500) -> list[JobEvent]:
        self.get(user_id, job_id)
        return self._store.list_events(job_id, after=after, limit=limit)

    def metrics(self, user_id: str, job_id: str) -> dict[str, list[tuple[int, float]]]:
        self.get(user_id, job_id)
        return self._store.list_metrics(job_id)

    def artifacts(self, user_id: str, job_id: str) -> list[Artifact]:
        self.get(user_id, job_id)
        return self._components.artifacts.list(job_id)

    def artifact_file(self, user_id: str, job_id: str, path: str) -> Path:
        self.get(user_id, job_id)
        return self._components.artifacts.resolve(job_id, path)

    # --- internals ---------------------------------------------------------------------------------------------

    def _check_active_cap(self, user_id: str) -> None:
        """RateLimited when the user already has max_active_jobs_per_user unfinished (queued, starting or running)
        jobs. A count then a create, so concurrent submits may pass it together by a few; the drain's atomic claim
        still bounds what runs."""
        cap = self._components.settings.max_active_jobs_per_user
        unfinished = self._store.count(statuses=_UNFINISHED, user_id=user_id)
        if unfinished >= cap:
            raise RateLimited(
                f"you have {unfinished} unfinished jobs and the limit is {cap}; "
                "wait for one to finish or cancel one, then submit again",
                retry_after_s=_ACTIVE_CAP_RETRY_AFTER_S,
            )

    def _create_and_enqueue(
        self, user_id: str, spec: dict[str, Any], *, name: str, job_id: str, retry_of: str | None = None
    ) -> Job:
        now = utcnow()
        job = self._store.create(
            Job(
                id=job_id,
                user_id=user_id,
                name=name,
                status=JobStatus.QUEUED,
                spec=spec,
                retry_of=retry_of,
                created_at=now,
                updated_at=now,
            )
        )
        self._store.append_event(
            job.id, "status", "queued" if retry_of is None else f"queued: retry of {retry_of}", {"status": "queued"}
        )
        job = enqueue(self._components, job)
        if self._kick is not None:
            self._kick()
        return job

    def _wait_for_idempotent_job(self, user_id: str, job_id: str) -> Job:
        deadline = time.monotonic() + _IDEMPOTENT_WAIT_S
        while True:
            job = self._store.get(job_id, user_id=user_id)
            if job is not None:
                return job
            if time.monotonic() >= deadline:
                raise IdempotencyConflict("a request with this Idempotency-Key is still being processed; retry shortly")
            time.sleep(0.05)
