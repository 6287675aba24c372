"""The one place that knows which job status may follow which.

    queued ──▶ starting ──▶ running ──▶ succeeded | failed | cancelled
      │  ▲        │  │                     ▲
      │  └────────┘  └──▶ failed | cancelled (launch gave up, or cancelled before the worker began)
      │   starting → queued: launch failed, retried later
      │   running  → queued: worker lost or preempted; attempt + 1, resumes from its last checkpoint
      └──▶ cancelled | failed (poison message)

Terminal states never change. Every status write in the service goes through `transition`, which returns the
compare-and-set a store must perform: the new fields and the statuses the row must still be in. Callers fence
writes on the job's attempt too (`expected_attempt`), so a worker from an older attempt cannot overwrite a newer one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from robotrain.jobs.models import Job, JobChanges, JobStatus, utcnow

S = JobStatus

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.QUEUED: frozenset({S.STARTING, S.CANCELLED, S.FAILED}),
    S.STARTING: frozenset({S.RUNNING, S.QUEUED, S.FAILED, S.CANCELLED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED, S.QUEUED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    return target in TRANSITIONS[current]


def sources_of(target: JobStatus) -> frozenset[JobStatus]:
    """Every status from which `target` may be entered: the `expected` set of a compare-and-set."""
    return frozenset(src for src, targets in TRANSITIONS.items() if target in targets)


@dataclass(frozen=True)
class IllegalTransition(Exception):
    current: JobStatus
    target: JobStatus

    def __str__(self) -> str:
        return f"a {self.current.value} job cannot become {self.target.value}"


@dataclass(frozen=True)
class StatusChange:
    """A compare-and-set for the store: write `changes` only while the row is still in one of `expected`."""

    changes: JobChanges
    expected: frozenset[JobStatus]


def transition(job: Job, target: JobStatus, **fields: Any) -> StatusChange:
    """Check that `job` may move to `target` and return the compare-and-set that does it.

    `fields` are other JobChanges fields written in the same update (error, result, progress, launch_handle, ...).
    The bookkeeping that every such move needs is added here, so no caller can forget it:
    - entering `starting` (a claim) increments `attempt`: each launch gets its own fencing number;
    - entering `running` stamps `started_at` (the current attempt's start; the timeout counts from it) and the
      first `heartbeat_at`;
    - entering a terminal status stamps `finished_at`.
    The expected status is the one observed on `job`, so a concurrent change in between makes the write a no-op.
    Raises IllegalTransition.
    """
    if not can_transition(job.status, target):
        raise IllegalTransition(job.status, target)
    now = utcnow()
    values: dict[str, Any] = {"status": target}
    if target is JobStatus.STARTING:
        values["attempt"] = job.attempt + 1
    elif target is JobStatus.RUNNING:
        values["started_at"] = now
        values["heartbeat_at"] = now
    elif target.is_terminal:
        values["finished_at"] = now
    values.update(fields)
    return StatusChange(changes=JobChanges(**values), expected=frozenset({job.status}))
