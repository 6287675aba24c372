"""The job domain's data: what a job is, as stored and as returned by the API."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from training.spec import ComputeSpec, TrainSpec


class JobStatus(StrEnum):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @classmethod
    def terminal(cls) -> frozenset[JobStatus]:
        return frozenset({cls.SUCCEEDED, cls.FAILED, cls.CANCELLED})

    @classmethod
    def active(cls) -> frozenset[JobStatus]:
        """States that hold (or are about to hold) compute."""
        return frozenset({cls.STARTING, cls.RUNNING})

    @property
    def is_terminal(self) -> bool:
        return self in JobStatus.terminal()


class ErrorCode(StrEnum):
    """Why a job failed. Stable strings: clients branch on them."""

    DATASET_INVALID = "dataset_invalid"
    DATASET_FORBIDDEN = "dataset_forbidden"
    LIMIT_EXCEEDED = "limit_exceeded"
    CHECKPOINT_INVALID = "checkpoint_invalid"
    EVAL_ENV_INVALID = "eval_env_invalid"
    TRAINING_ERROR = "training_error"
    TIMEOUT = "timeout"
    WORKER_LOST = "worker_lost"
    LAUNCH_FAILED = "launch_failed"
    POISON_MESSAGE = "poison_message"
    INTERNAL = "internal"


class EventKind(StrEnum):
    """What a job event records: a status change (written with the change by the lifecycle) or a log line."""

    STATUS = "status"
    LOG = "log"


class JobError(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: ErrorCode
    message: str


class Progress(BaseModel):
    model_config = ConfigDict(frozen=True)

    step: int = 0
    total_steps: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)


class Job(BaseModel):
    """A training job. `spec` is the validated TrainSpec as JSON; `attempt` counts launches (0 until the first).

    `launch_handle`, `heartbeat_at` and `enqueued_at` are internal bookkeeping for the dispatcher; the API hides
    `launch_handle` from users."""

    model_config = ConfigDict(frozen=True)

    id: str
    user_id: str
    name: str
    status: JobStatus
    spec: dict[str, Any]
    attempt: int = 0
    retry_of: str | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: Progress = Field(default_factory=Progress)
    result: dict[str, Any] | None = None
    error: JobError | None = None
    launch_handle: str | None = None
    heartbeat_at: datetime | None = None
    enqueued_at: datetime | None = None

    @property
    def train_spec(self) -> TrainSpec:
        """The spec as the typed TrainSpec it was validated as at submit (defaults filled in). Raises pydantic's
        ValidationError when a stored spec no longer validates (a spec written by an older version)."""
        return TrainSpec.model_validate(self.spec)

    @property
    def compute(self) -> ComputeSpec:
        """The compute section (GPU, timeout) with its defaults: the one place the sweep, the reporter and the
        launchers read them from."""
        return ComputeSpec.model_validate(self.spec.get("compute") or {})


class JobChanges(BaseModel):
    """The fields a compare-and-set may write. Unset fields are left alone (use `model_fields_set`)."""

    model_config = ConfigDict(frozen=True)

    status: JobStatus | None = None
    attempt: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: Progress | None = None
    result: dict[str, Any] | None = None
    error: JobError | None = None
    launch_handle: str | None = None
    heartbeat_at: datetime | None = None
    enqueued_at: datetime | None = None


class JobEvent(BaseModel):
    """One entry of a job's timeline. `id` increases with every append (so `?after=id` pages forward)."""

    model_config = ConfigDict(frozen=True)

    id: int
    job_id: str
    at: datetime
    kind: EventKind
    message: str
    data: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class NewEvent:
    """An event to append in the same store call as the write it records (a submit, a claim, a recorded launch)."""

    kind: EventKind
    message: str
    data: dict[str, Any] = field(default_factory=dict)


class MetricPoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    step: int
    name: str
    value: float


class Page(BaseModel):
    data: list[Job]
    next_cursor: str | None = None


def utcnow() -> datetime:
    return datetime.now(UTC)


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_job_id() -> str:
    """A ULID-style id (48-bit ms timestamp + 80 random bits, Crockford base32) so ids sort by creation time."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, index = divmod(value, 32)
        chars.append(_CROCKFORD[index])
    return "job_" + "".join(reversed(chars)).lower()
