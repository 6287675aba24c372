"""The seams the cloud plugs into. Each port has an embedded adapter (SQLite, a local queue, subprocesses, a
directory, local keys) and a cloud adapter (Supabase, SQS, Modal, a Modal Volume, Clerk). The lifecycle, the services
and the three processes (api, control plane, worker) depend on these protocols and on `Components` only;
`robotrain.wiring` and the entry points pick the adapters."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from robotrain.jobs.claims import ClaimBatch, LaunchRecord
from robotrain.jobs.models import Job, JobChanges, JobEvent, JobStatus, MetricPoint, NewEvent, Page
from robotrain.jobs.submission import SubmitOutcome, SubmitRequest
from robotrain.settings import Settings


class JobStore(Protocol):
    """The source of truth for jobs. Status changes are compare-and-set only; the state machine decides them."""

    def create(self, job: Job) -> Job: ...

    def submit(self, request: SubmitRequest) -> SubmitOutcome:
        """A user's submit in one atomic round trip: the replay and reuse of an Idempotency-Key, the user's submit
        rate bucket and cap on unfinished jobs, then the job, its first event and the key (robotrain.jobs.submission
        has the rules). Safe to repeat after a lost answer: the job's id makes a second call answer Created with it."""

    def get(self, job_id: str, *, user_id: str | None = None) -> Job | None:
        """The job, or None when missing or (with `user_id`) owned by someone else."""

    def list_jobs(
        self, *, user_id: str, status: JobStatus | None = None, limit: int = 20, cursor: str | None = None
    ) -> Page:
        """The user's jobs newest first (created_at, then id, descending); `next_cursor` is opaque and stable
        under concurrent inserts."""

    def update(
        self,
        job_id: str,
        changes: JobChanges,
        *,
        expected: Collection[JobStatus],
        expected_attempt: int | None = None,
    ) -> Job | None:
        """Apply `changes` only if the row's status is in `expected` (and its attempt equals `expected_attempt`
        when given); return the updated job, or None when the condition did not hold (the race was lost)."""

    def find(
        self,
        *,
        statuses: Collection[JobStatus],
        limit: int = 100,
        unsent: bool = False,
        holding_compute: bool = False,
    ) -> list[Job]:
        """Jobs of any user in these statuses, oldest first (for the dispatcher's sweep). With `unsent` only jobs whose
        enqueued_at is null; with `holding_compute` only jobs with a launch_handle. The filters keep a backlog from
        hiding the jobs the sweep looks for behind the oldest `limit` rows."""

    def claim(self, job_id: str, *, max_active: int, max_active_per_user: int) -> Job | None:
        """Atomically move the job queued → starting (attempt + 1) only while fewer than `max_active` jobs of any user
        and fewer than `max_active_per_user` of its owner are starting or running; None when the job is not queued or
        a cap is reached. Atomic across processes: concurrent claims can never exceed either cap."""

    def claim_many(
        self, job_ids: Sequence[str], *, max_active: int, max_active_per_user: int, event: NewEvent
    ) -> ClaimBatch:
        """`claim` for several jobs in one round trip, under the same lock, each claim's status event (`event`, with
        the claimed `attempt` added to its data) appended in the same call (robotrain.jobs.claims has the rules)."""

    def record_launches(self, launches: Sequence[LaunchRecord], *, expected: Collection[JobStatus]) -> set[str]:
        """Record each launch's handle, fenced on the job still being in `expected` at that attempt, and append its
        event, in one round trip; return the ids whose handle was recorded (the others moved on meanwhile)."""

    def ping(self) -> None:
        """Cheap round trip for readiness checks; raises StoreUnavailable when the store cannot be reached."""

    def count(self, *, statuses: Collection[JobStatus], user_id: str | None = None) -> int: ...

    def append_event(self, job_id: str, kind: str, message: str, data: dict[str, Any] | None = None) -> JobEvent: ...

    def list_events(self, job_id: str, *, after: int = 0, limit: int = 500) -> list[JobEvent]: ...

    def append_metrics(self, job_id: str, points: list[MetricPoint]) -> None: ...

    def list_metrics(self, job_id: str) -> dict[str, list[tuple[int, float]]]:
        """Every metric series of the job, each ordered by step."""

    def list_owned_events(
        self, job_id: str, *, user_id: str, after: int = 0, limit: int = 500
    ) -> list[JobEvent] | None:
        """`list_events` of the user's own job in one round trip; None when the job is missing or someone else's."""

    def list_owned_metrics(self, job_id: str, *, user_id: str) -> dict[str, list[tuple[int, float]]] | None:
        """`list_metrics` of the user's own job in one round trip; None when the job is missing or someone else's."""

    def forget_idempotency_keys(self, older_than: datetime) -> int:
        """Delete keys remembered before `older_than` (callers keep them at least 24 h); return how many."""


@dataclass(frozen=True)
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int


MAX_MESSAGE_BYTES = 1_048_576
"""SQS's limit on a message body, counted in UTF-8 bytes (AWS, "Amazon SQS message quotas"). Every queue adapter checks it itself."""


class MessageTooLarge(ValueError):
    """The body is over MAX_MESSAGE_BYTES in UTF-8. A programming error (the service only sends small JSON), not a
    client's mistake, so it is a ValueError rather than an AppError."""


class ReceiptHandleInvalid(ValueError):
    """The receipt handle is unknown or stale (the message was deleted, or received again since)."""


class JobQueue(Protocol):
    """At-least-once delivery with SQS semantics: a received message is hidden for the visibility timeout and comes
    back unless deleted; after `max_receives` receives it moves to the dead-letter queue."""

    def send(self, body: str) -> str:
        """Enqueue and return the message id. A body over MAX_MESSAGE_BYTES in UTF-8 raises MessageTooLarge."""

    def receive(
        self, *, max_messages: int = 10, visibility_timeout: int | None = None, wait_seconds: float = 0
    ) -> list[QueueMessage]:
        """Up to `max_messages` (1-10) visible messages, each hidden for `visibility_timeout` (0-43,200 s) and with
        a new receipt handle; with `wait_seconds` (0-20) > 0, wait until one is visible or the time is up.
        Out-of-range arguments raise ValueError."""

    def delete(self, receipt_handles: list[str]) -> list[str]:
        """Delete by receipt handle; return the handles that failed."""

    def change_visibility(self, receipt_handle: str, timeout_seconds: int) -> None:
        """Hide the message for `timeout_seconds` (0-43,200) from now; 0 makes it visible at once. A stale or
        unknown handle raises ReceiptHandleInvalid."""

    def ping(self) -> None:
        """Cheap round trip for readiness checks; raises QueueUnavailable when the queue cannot be reached."""


class Launcher(Protocol):
    """Starts a worker for one attempt of a job and can stop it."""

    def launch(self, job: Job) -> str:
        """Start the worker for `job` (its id and attempt); return an opaque handle."""

    def is_alive(self, handle: str) -> bool | None:
        """True while the worker runs, False once it has ended, None when the launcher cannot tell."""

    def cancel(self, handle: str) -> None: ...


@dataclass(frozen=True)
class Artifact:
    path: str
    size: int


class ArtifactStore(Protocol):
    """Files a job produces (checkpoints, result.json, logs), under one directory per job."""

    def job_dir(self, job_id: str) -> Path:
        """Where the worker writes this job's files (created on demand)."""

    def list_files(self, job_id: str) -> list[Artifact]: ...

    def resolve(self, job_id: str, path: str) -> Path:
        """The file at `path` inside the job's directory; raises ArtifactNotFound when missing or outside it."""

    def publish(self, job_id: str) -> None:
        """Make what the worker wrote so far durable and visible to other machines (a Volume commit); called after
        each checkpoint and when the attempt ends."""


class TokenVerifier(Protocol):
    def verify(self, token: str) -> str:
        """The user id the token proves; raises Unauthorized (or AuthUnavailable when keys cannot be fetched)."""


@dataclass
class Components:
    """One process's adapters behind each port, with the settings they were built from. Built by `robotrain.wiring`
    (or an entry point that supplies platform-specific adapters) and handed down; nothing below the entry points
    knows which classes these are."""

    settings: Settings
    store: JobStore
    queue: JobQueue
    launcher: Launcher
    artifacts: ArtifactStore
