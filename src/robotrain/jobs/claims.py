"""The drain's store calls for a batch of queue messages: claim up to ten jobs in one round trip
(`JobStore.claim_many`), then record the launched workers' handles in one more (`JobStore.record_launches`).

`claim_many` takes the job ids in message order and, atomically and serialised with every other claim (the same
lock as the single-job `claim`), looks at each in turn: a missing job is `Missing`, one that is not queued is
`NotQueued` (with its status), a queued one is `Claimed` (queued -> starting, attempt + 1, its status event
appended in the same call) while fewer than `max_active` jobs of any user and fewer than `max_active_per_user` of its
owner are starting or running, the claims made earlier in the same call included, and `Capped` otherwise (`GLOBAL`
when the global cap holds it back, `USER` when only its owner's does).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from robotrain.jobs.models import Job, JobStatus, NewEvent


class CapScope(StrEnum):
    GLOBAL = "global"
    USER = "user"


@dataclass(frozen=True)
class Claimed:
    job: Job


@dataclass(frozen=True)
class NotQueued:
    status: JobStatus


@dataclass(frozen=True)
class Missing:
    pass


@dataclass(frozen=True)
class Capped:
    scope: CapScope
    job: Job  # still queued, as read under the claim lock


ClaimOutcome = Claimed | NotQueued | Missing | Capped


@dataclass(frozen=True)
class ClaimBatch:
    outcomes: dict[str, ClaimOutcome]  # one per distinct job id asked for, in the order asked
    active: int  # jobs of every user starting or running once the call's claims are counted


@dataclass(frozen=True)
class LaunchRecord:
    """A worker started for `attempt` of the job: its handle is recorded only while the job is still at that attempt
    (and in the statuses the caller expects), and then `event` is appended in the same call."""

    job_id: str
    attempt: int
    handle: str
    event: NewEvent
