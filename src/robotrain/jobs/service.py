"""The job service: what a user (through the API) may do with jobs: submit, read, cancel, retry. Routes call it; it
calls the ports, and moves jobs only through the lifecycle kernel (robotrain.jobs.lifecycle)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from robotrain.errors import (
    IdempotencyConflict,
    InvalidRequest,
    JobConflict,
    JobNotFound,
    LimitExceeded,
    RateLimited,
    ServiceUnavailable,
)
from robotrain.jobs.admission import Admission
from robotrain.jobs.lifecycle import apply_transition, new_queued_job, send_created, stop_compute
from robotrain.jobs.models import Job, JobEvent, JobStatus, Page, new_job_id, utcnow
from robotrain.jobs.schemas import StatusUpdate
from robotrain.jobs.state_machine import IllegalTransition
from robotrain.jobs.submission import (
    Created,
    KeyReused,
    OverActiveCap,
    OverStorage,
    Replayed,
    SubmitOutcome,
    SubmitRateLimited,
    SubmitRequest,
)
from robotrain.ports import Artifact, Components
from training.spec import TrainSpec

log = logging.getLogger(__name__)

# A lost compare-and-set is retried against a fresh read this many times before giving up with 409.
_CAS_RETRIES = 5
# Statuses that count against a user's cap at submit: everything not finished.
_UNFINISHED = frozenset({JobStatus.QUEUED, JobStatus.STARTING, JobStatus.RUNNING})
# Statuses a job may be retried from.
_RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})
# Retry-After for a user at the cap: a guess at how soon one of their jobs ends; they may also cancel one.
_ACTIVE_CAP_RETRY_AFTER_S = 30


def _request_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def default_job_name(spec: TrainSpec) -> str:
    dataset = spec.dataset.uri.split("?", 1)[0]
    return f"{spec.policy.type} on {dataset}"


class JobService:
    def __init__(self, components: Components, *, kick: Callable[[str], None] | None = None):
        """`kick(job_id)` wakes the control plane for a job just queued."""
        self._components = components
        self._store = components.store
        self._kick = kick
        self._admission = Admission(components)

    # --- commands ----------------------------------------------------------------------------------------------

    def submit(self, user_id: str, spec: TrainSpec, *, idempotency_key: str | None = None) -> Job:
        """Store a queued job, send its message, kick the drain: one store call (which also checks the user's
        submit rate and cap on unfinished jobs) and one queue send. With an Idempotency-Key the first job for that
        key (and the same spec) is returned again, even at the cap; the same key with another spec is
        IdempotencyConflict."""
        # the dataset is one the user may read; the job fits the limits
        storage_needed = self._admission.check(user_id, spec)
        spec_json = spec.model_dump(mode="json")
        return self._submit(
            user_id,
            spec_json,
            name=spec.name or default_job_name(spec),
            idempotency_key=idempotency_key,
            request_hash=_request_hash(spec_json) if idempotency_key is not None else None,
            storage_needed=storage_needed,
        )

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
        """A new queued job with the same spec and `retry_of` = the old id. Only from failed or cancelled. Two
        store calls: the old job's read (a finished job never changes, so nothing can slip in between), then the
        same submit call as `submit`, with the same rate and cap."""
        job = self.get(user_id, job_id)
        if job.status not in _RETRYABLE:
            raise JobConflict(f"job {job_id} is {job.status.value}; only failed or cancelled jobs can be retried")
        try:
            spec = job.train_spec
        except ValidationError:
            raise InvalidRequest(f"job {job_id}'s spec is no longer valid; submit a corrected spec") from None
        # the rules and the dataset may have changed since the first try
        storage_needed = self._admission.check(user_id, spec)
        return self._submit(user_id, job.spec, name=job.name, retry_of=job.id, storage_needed=storage_needed)

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

    def list_jobs(
        self, user_id: str, *, status: JobStatus | None = None, limit: int = 20, cursor: str | None = None
    ) -> Page:
        return self._store.list_jobs(user_id=user_id, status=status, limit=limit, cursor=cursor)

    def events(self, user_id: str, job_id: str, *, after: int = 0, limit: int = 500) -> list[JobEvent]:
        events = self._store.list_owned_events(job_id, user_id=user_id, after=after, limit=limit)
        if events is None:
            raise JobNotFound(job_id)
        return events

    def metrics(self, user_id: str, job_id: str) -> dict[str, list[tuple[int, float]]]:
        series = self._store.list_owned_metrics(job_id, user_id=user_id)
        if series is None:
            raise JobNotFound(job_id)
        return series

    def artifacts(self, user_id: str, job_id: str) -> list[Artifact]:
        self.get(user_id, job_id)
        return self._components.artifacts.list_files(job_id)

    def artifact_file(self, user_id: str, job_id: str, path: str) -> Path:
        self.get(user_id, job_id)
        return self._components.artifacts.resolve(job_id, path)

    # --- internals ---------------------------------------------------------------------------------------------

    def _submit(
        self,
        user_id: str,
        spec: dict[str, Any],
        *,
        name: str,
        retry_of: str | None = None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        storage_needed: int | None = None,
    ) -> Job:
        settings = self._components.settings
        now = utcnow()
        job, event = new_queued_job(new_job_id(), user_id, spec, name=name, now=now, retry_of=retry_of)
        request = SubmitRequest(
            job=job,
            event=event,
            now=now,
            rate_per_minute=settings.submit_rate_per_minute,
            max_unfinished=settings.max_active_jobs_per_user,
            unfinished_statuses=_UNFINISHED,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            storage_needed_bytes=storage_needed,
            storage_quota_bytes=settings.max_artifacts_bytes_per_user if storage_needed is not None else None,
        )
        return self._settle(request, self._store.submit(request))

    def _settle(self, request: SubmitRequest, outcome: SubmitOutcome) -> Job:
        """The store's answer to a submit as the caller sees it: a created job is sent (and the drain kicked), a
        replay is answered as it is, a refusal is its error."""
        settings = self._components.settings
        match outcome:
            case Created(job):
                job = send_created(self._components, job)
                if self._kick is not None:
                    self._kick(job.id)
                return job
            case Replayed(job):
                return job
            case KeyReused():
                raise IdempotencyConflict("this Idempotency-Key was already used with a different request body")
            case OverActiveCap(unfinished):
                cap = settings.max_active_jobs_per_user
                raise RateLimited(
                    f"you have {unfinished} unfinished jobs and the limit is {cap}; "
                    "wait for one to finish or cancel one, then submit again",
                    retry_after_s=_ACTIVE_CAP_RETRY_AFTER_S,
                )
            case SubmitRateLimited(retry_after_s):
                rate = settings.submit_rate_per_minute
                raise RateLimited(
                    f"too many job submissions: at most {rate} per minute; retry in {retry_after_s}s",
                    retry_after_s=retry_after_s,
                )
            case OverStorage(used):
                needed, quota = request.storage_needed_bytes, request.storage_quota_bytes
                raise LimitExceeded(
                    f"this job's checkpoints need about {needed:,} bytes and you store {used:,} of your {quota:,}; "
                    "delete datasets you no longer need"
                )
        raise AssertionError(f"unknown submit outcome {outcome!r}")
