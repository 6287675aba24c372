"""The webhook domain's data: endpoints, deliveries (the outbox), attempts, and the event types."""

from __future__ import annotations

import base64
import os
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from robotrain.jobs.models import Job, JobStatus


class WebhookEventType(StrEnum):
    JOB_RUNNING = "job.running"
    JOB_SUCCEEDED = "job.succeeded"
    JOB_FAILED = "job.failed"
    JOB_CANCELLED = "job.cancelled"

    @classmethod
    def for_status(cls, status: str) -> WebhookEventType | None:
        """The event a status change into `status` raises, or None (queued and starting raise none)."""
        try:
            return cls(f"job.{status}")
        except ValueError:
            return None


# The job statuses whose status events become webhook events.
EVENT_STATUSES = frozenset({JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (or being attempted)
    SUCCEEDED = "succeeded"  # the endpoint answered 2xx
    FAILED = "failed"  # retried for webhook_retry_for_s without a 2xx; redeliver by hand


class WebhookEndpoint(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    user_id: str
    url: str
    events: list[WebhookEventType]
    secret: str
    created_at: datetime


class DeliveryAttempt(BaseModel):
    model_config = ConfigDict(frozen=True)

    at: datetime
    status_code: int | None = None  # None when no HTTP answer came (refused address, timeout, connection error)
    error: str | None = None
    response_body: str = ""  # truncated
    duration_ms: int = 0


class Delivery(BaseModel):
    """One event for one endpoint: an outbox row. Unique per (endpoint, event), so deriving it twice is harmless."""

    model_config = ConfigDict(frozen=True)

    id: str
    endpoint_id: str
    event_id: int  # the job status event it comes from; `msg_<event_id>` is its webhook-id
    type: WebhookEventType
    payload: dict[str, Any]
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    next_attempt_at: datetime | None = None  # None once it is no longer pending
    retry_until: datetime
    created_at: datetime
    updated_at: datetime
    history: list[DeliveryAttempt] = Field(default_factory=list)  # filled by list_deliveries only

    @property
    def message_id(self) -> str:
        return message_id(self.event_id)


class StatusEvent(BaseModel):
    """A job status event with its job as it is now: what the relay turns into deliveries."""

    model_config = ConfigDict(frozen=True)

    event_id: int
    at: datetime
    status: str
    job: Job


def message_id(event_id: int) -> str:
    """The webhook-id of an event: the same on every retry and every endpoint, so receivers deduplicate on it."""
    return f"msg_{event_id}"


def new_endpoint_id() -> str:
    return "whe_" + os.urandom(12).hex()


def new_delivery_id() -> str:
    return "whd_" + os.urandom(12).hex()


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode("ascii")
