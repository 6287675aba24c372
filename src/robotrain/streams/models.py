"""What a live stream reads from the store and what it sends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from robotrain.jobs.models import Job, JobEvent


@dataclass(frozen=True)
class MetricChange:
    """A metric point as the stream sees it: `seq` increases with every write of a (name, step), so a point that a
    resumed attempt reports again comes back with a new seq and its new value."""

    seq: int
    name: str
    step: int
    value: float


@dataclass(frozen=True)
class JobFeed:
    """One poll of one job: the job now, and what was written after the cursor (each list in id / seq order)."""

    job: Job
    events: list[JobEvent] = field(default_factory=list)
    metrics: list[MetricChange] = field(default_factory=list)


@dataclass(frozen=True)
class StreamMessage:
    """One server-sent event: `event` names it, `data` is its JSON, `id` is the cursor to resume after it."""

    event: str
    data: dict[str, Any]
    id: str | None = None
