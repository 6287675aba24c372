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

from robotrain.apikeys.models import ApiKey
from robotrain.datasets.models import Dataset, DatasetPage
from robotrain.jobs.claims import ClaimBatch, LaunchRecord
from robotrain.jobs.models import Job, JobChanges, JobEvent, JobStatus, MetricPoint, NewEvent, Page
from robotrain.jobs.submission import SubmitOutcome, SubmitRequest
from robotrain.settings import Settings
from robotrain.streams.models import JobFeed
from robotrain.webhooks.models import Delivery, DeliveryAttempt, DeliveryStatus, StatusEvent, WebhookEndpoint


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


class ApiKeyStore(Protocol):
    """Personal API keys (robotrain.apikeys). Secrets are never stored: a key is found by the sha256 of its secret."""

    def create_api_key(self, key: ApiKey) -> ApiKey: ...

    def list_api_keys(self, user_id: str) -> list[ApiKey]:
        """The user's keys that are not revoked (expired ones included), newest first."""

    def find_api_key(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, revoked or not; None when there is none."""

    def revoke_api_key(self, user_id: str, key_id: str, *, revoked_at: datetime) -> ApiKey | None:
        """Mark the user's key revoked; None when the user has no such key, or it is revoked already."""


class DatasetStore(Protocol):
    """The catalogue of uploaded datasets, and what each user stores (uploads plus job artifacts), for the per-user
    storage limit. Every read and delete is scoped to an owner: another user's dataset is None, like a missing one."""

    def create(self, dataset: Dataset) -> Dataset: ...

    def get(self, dataset_id: str, *, user_id: str) -> Dataset | None: ...

    def list_datasets(self, *, user_id: str, limit: int = 20, cursor: str | None = None) -> DatasetPage:
        """The user's datasets newest first (created_at, then id, descending), paged like JobStore.list_jobs."""

    def in_use(self, dataset_id: str, *, user_id: str) -> bool:
        """Whether a queued, starting or running job of the user names `dataset://<dataset_id>`."""

    def delete(self, dataset_id: str, *, user_id: str) -> bool:
        """Delete the user's dataset unless it is in use, atomically; True when deleted, False when there is no such
        dataset of this user. Raises DatasetInUse when an unfinished job names it."""

    def record_artifact_bytes(self, job_id: str, *, user_id: str, size: int) -> None:
        """Store the size of the job's artifacts as last measured (replacing the previous measure)."""

    def usage_bytes(self, user_id: str) -> int:
        """The bytes the user stores: the sizes of their datasets plus their jobs' recorded artifacts."""


class DatasetFiles(Protocol):
    """Where uploaded datasets' files live (`root`), and how a write on one machine becomes visible on another."""

    root: Path

    def publish(self) -> None:
        """Make what this process wrote under `root` durable and visible to other machines (a Volume commit)."""

    def refresh(self) -> None:
        """See what other machines published under `root` (a Volume reload)."""


class TokenVerifier(Protocol):
    def verify(self, token: str) -> str:
        """The user id the token proves; raises Unauthorized (or AuthUnavailable when keys cannot be fetched)."""


class StreamStore(Protocol):
    """The reads behind live streams: each call is one round trip to the store, so an open stream costs one small
    read per poll whichever API process serves it."""

    def job_feed(
        self, job_id: str, *, user_id: str, after_event: int = 0, after_metric: int = 0, limit: int = 500
    ) -> JobFeed | None:
        """The user's job now, its events with id > `after_event` and its metric changes with seq > `after_metric`
        (each at most `limit`, ordered); None when the job is missing or someone else's."""

    def jobs_changed(self, *, user_id: str, since: datetime, limit: int = 200) -> list[Job]:
        """The user's jobs whose updated_at is at or after `since`, ordered by (updated_at, id)."""


class WebhookStore(Protocol):
    """Webhook endpoints, the delivery outbox with every attempt, and the relay's cursor over status events."""

    def create_endpoint(self, endpoint: WebhookEndpoint) -> WebhookEndpoint: ...

    def get_endpoint(self, endpoint_id: str, *, user_id: str | None = None) -> WebhookEndpoint | None: ...

    def list_endpoints(self, *, user_id: str) -> list[WebhookEndpoint]: ...

    def count_endpoints(self, *, user_id: str) -> int: ...

    def delete_endpoint(self, endpoint_id: str, *, user_id: str) -> bool:
        """Delete it with its deliveries; False when missing or someone else's."""

    def set_secret(self, endpoint_id: str, *, user_id: str, secret: str) -> WebhookEndpoint | None: ...

    def endpoints_of(self, user_ids: Collection[str]) -> list[WebhookEndpoint]:
        """Every endpoint of these users (the relay's fan-out)."""

    def status_events(self, *, after: int, statuses: Collection[JobStatus], limit: int = 500) -> list[StatusEvent]:
        """Status events (of every user) with id > `after` into one of `statuses`, each with its job, by id."""

    def relay_cursor(self) -> int:
        """The status event id below which every event has been turned into deliveries (0 at first)."""

    def set_relay_cursor(self, event_id: int) -> None: ...

    def add_deliveries(self, deliveries: list[Delivery]) -> int:
        """Insert the deliveries; one that exists for the same (endpoint, event) is left as it is. Returns how many
        were new."""

    def due_deliveries(self, *, now: datetime, limit: int = 50) -> list[Delivery]:
        """Pending deliveries whose next attempt is due, oldest due first."""

    def lease_delivery(self, delivery_id: str, *, expected_next_at: datetime, until: datetime) -> Delivery | None:
        """Compare-and-set: push a due delivery's next attempt to `until` (a lease while it is being sent) only if
        it is still pending at `expected_next_at`; None when another relay took it first."""

    def record_attempt(
        self,
        delivery_id: str,
        attempt: DeliveryAttempt,
        *,
        status: DeliveryStatus,
        attempts: int,
        next_attempt_at: datetime | None,
    ) -> None:
        """Append the attempt to the delivery's history and set its status, attempt count and next attempt."""

    def get_delivery(self, delivery_id: str, *, endpoint_id: str) -> Delivery | None: ...

    def list_deliveries(self, endpoint_id: str, *, limit: int = 50) -> list[Delivery]:
        """The endpoint's deliveries newest first, each with its attempt history."""

    def redeliver(self, delivery_id: str, *, endpoint_id: str, now: datetime, retry_until: datetime) -> Delivery | None:
        """Make the delivery pending again with its next attempt now (a manual redelivery)."""


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
    streams: StreamStore | None = None  # live streams (the API); None where a process does not serve them
    webhooks: WebhookStore | None = None  # webhook endpoints and their outbox (the API and the control plane)
    # Uploaded datasets: always set by robotrain.wiring; None where a test builds Components without them (then
    # dataset:// URIs and the /datasets routes answer that uploads are not available).
    datasets: DatasetStore | None = None
    dataset_files: DatasetFiles | None = None
