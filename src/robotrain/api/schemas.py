"""What the API sends and receives. The public job hides the dispatcher's bookkeeping (launch handle, heartbeat)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from robotrain.jobs.models import Job, JobError, JobEvent, JobStatus, Progress


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str


class ErrorInfo(BaseModel):
    code: str = Field(description="Machine-readable, stable: clients branch on it.")
    message: str
    details: list[ErrorDetail] | None = Field(None, description="Present on validation errors: one per field.")


class ErrorBody(BaseModel):
    error: ErrorInfo


class JobOut(BaseModel):
    id: str
    user_id: str
    name: str
    status: JobStatus
    spec: dict[str, Any]
    attempt: int
    retry_of: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: Progress
    result: dict[str, Any] | None
    error: JobError | None

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            id=job.id,
            user_id=job.user_id,
            name=job.name,
            status=job.status,
            spec=job.spec,
            attempt=job.attempt,
            retry_of=job.retry_of,
            created_at=job.created_at,
            updated_at=job.updated_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            progress=job.progress,
            result=job.result,
            error=job.error,
        )


class JobPage(BaseModel):
    data: list[JobOut]
    next_cursor: str | None


class EventOut(BaseModel):
    id: int
    at: datetime
    kind: str = Field(description='"status" or "log"')
    message: str
    data: dict[str, Any]

    @classmethod
    def of(cls, event: JobEvent) -> EventOut:
        return cls(id=event.id, at=event.at, kind=event.kind, message=event.message, data=event.data)


class EventPage(BaseModel):
    data: list[EventOut]


class MetricSeries(BaseModel):
    series: dict[str, list[tuple[int, float]]] = Field(description="name -> [[step, value], ...] ordered by step")


class ArtifactOut(BaseModel):
    path: str = Field(description="Relative to the job's directory")
    size: int


class ArtifactList(BaseModel):
    data: list[ArtifactOut]


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str = Field(description='"ready", or "unavailable" (HTTP 503) when a dependency does not answer.')
    checks: dict[str, str] = Field(description='Per dependency (store, queue): "ok", "unavailable" or "unchecked".')
    error: ErrorInfo | None = Field(None, description="Present when not ready, in the one error shape.")
