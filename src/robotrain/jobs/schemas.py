"""Inputs to the job service that are not the job itself."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from robotrain.jobs.models import JobError, JobStatus, Progress


class StatusUpdate(BaseModel):
    """Body of `PUT /jobs/{id}/status`: an internal caller (a worker running elsewhere) moves a job on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: JobStatus
    error: JobError | None = None
    progress: Progress | None = None
    result: dict[str, Any] | None = None
