"""The one place that knows which job status may follow which.

    queued ──▶ starting ──▶ running ──▶ succeeded | failed | cancelled
      │  ▲        │  │                     ▲
      │  └────────┘  └──▶ failed | cancelled (launch gave up, or cancelled before the worker began)
      │   starting → queued: launch failed, retried later
      │   running  → queued: worker lost or preempted; attempt + 1, resumes from its last checkpoint
      └──▶ cancelled | failed (poison message)

Terminal states never change. Every status write in the service goes through `transition`, which returns the
compare-and-set a store must perform: the new fields and the statuses the row must still be in.
"""

from __future__ import annotations

from dataclasses import dataclass

from robotrain.jobs.models import JobStatus

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
