"""The job service: what a user (through the API) may do with jobs: submit, read, cancel, retry. Routes call it; it
calls the ports, and moves jobs only through the lifecycle kernel (robotrain.jobs.lifecycle)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from robotrain.errors import (
    IdempotencyConflict,
    InvalidRequest,
    JobConflict,
    JobNotFound,
    RateLimited,
    ServiceUnavailable,
)
from robotrain.jobs.admission import Admission
from robotrain.jobs.lifecycle import apply_transition, enqueue, stop_compute
from robotrain.jobs.models import EventKind, Job, JobEvent, JobStatus, Page, new_job_id, utcnow
from robotrain.jobs.schemas import StatusUpdate
from robotrain.jobs.state_machine import IllegalTransition
from robotrain.ports import Artifact, Components
from training.spec import TrainSpec

log = logging.getLogger(__name__)

# A lost compare-and-set is retried against a fresh read this many times before giving up with 409.
_CAS_RETRIES = 5
# A concurrent request with the same Idempotency-Key may still be creating its job; wait this long for it.
_IDEMPOTENT_WAIT_S = 2.0
# Statuses that count against a user's cap at submit: everything not finished.
_UNFINISHED = frozenset({JobStatus.QUEUED, JobStatus.STARTING, JobStatus.RUNNING})
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
        self._admission.check(user_id, spec)  # the dataset is one the user may read; the job fits the limits
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
        try:
            spec = job.train_spec
        except ValidationError:
            raise InvalidRequest(f"job {job_id}'s spec is no longer valid; submit a corrected spec") from None
        self._admission.check(user_id, spec)  # the rules and the dataset may have changed since the first try
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

    def list_jobs(
        self, user_id: str, *, status: JobStatus | None = None, limit: int = 20, cursor: str | None = None
    ) -> Page:
        return self._store.list_jobs(user_id=user_id, status=status, limit=limit, cursor=cursor)

    def events(self, user_id: str, job_id: str, *, after: int = 0, limit: int = 500) -> list[JobEvent]:
        self.get(user_id, job_id)
        return self._store.list_events(job_id, after=after, limit=limit)

    def metrics(self, user_id: str, job_id: str) -> dict[str, list[tuple[int, float]]]:
        self.get(user_id, job_id)
        return self._store.list_metrics(job_id)

    def artifacts(self, user_id: str, job_id: str) -> list[Artifact]:
        self.get(user_id, job_id)
        return self._components.artifacts.list_files(job_id)

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
            job.id,
            EventKind.STATUS,
            "queued" if retry_of is None else f"queued: retry of {retry_of}",
            {"status": "queued"},
        )
        job = enqueue(self._components, job)
        if self._kick is not None:
            self._kick(job.id)
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
