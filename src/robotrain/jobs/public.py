"""The job as users see it outside the JSON API (event streams, webhook payloads): without the dispatcher's
bookkeeping, the same fields as the API's JobOut."""

from __future__ import annotations

from typing import Any

from robotrain.jobs.models import Job

INTERNAL_FIELDS = frozenset({"launch_handle", "heartbeat_at", "enqueued_at"})


def public_job(job: Job) -> dict[str, Any]:
    return job.model_dump(mode="json", exclude=set(INTERNAL_FIELDS))
