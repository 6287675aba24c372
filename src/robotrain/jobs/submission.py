"""Submitting a job in one store round trip: what the service asks the store (`SubmitRequest`), what the store
answers (one of the `SubmitOutcome` types), and the per-user token bucket both stores compute the same way.

`JobStore.submit` decides everything in one atomic call (one PostgreSQL function, one SQLite transaction). The
user's bucket row is locked first, so one user's submits are serialised in the store and the checks below hold
exactly however many API processes submit at once. In this order:

1. the job's own id is already stored for this user: `Created` with that job. The call was retried after its
   answer was lost; nothing is created or charged twice (the job id is the call's own idempotency key);
2. the Idempotency-Key is stored with the same request hash: `Replayed` with its job, even at the cap and with an
   empty bucket, because a replay creates nothing; stored with another hash: `KeyReused`;
3. the user's bucket holds less than one token: `SubmitRateLimited`, with the seconds until one is back;
4. the user already has `max_unfinished` jobs in `unfinished_statuses`: `OverActiveCap`;
   and when `storage_needed_bytes` is given, what the user stores (uploads plus job artifacts, the datasets
   domain's tables) plus that would pass `storage_quota_bytes`: `OverStorage`;
5. otherwise the job and its first event are inserted, the key remembered and one token spent: `Created`.

A refused call writes nothing, so a refused submit leaves no key behind and spends no token. A further check is one
more step and one more outcome here, in the same call.

The bucket: capacity `rate_per_minute` tokens, refilled continuously at `rate_per_minute / 60` per second; a full
bucket allows a burst of `rate_per_minute` submits. It lives in the store (one row per user), so it holds across API
processes. `now` comes from the caller, so tests can drive the clock; a clock that steps back refills nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from robotrain.jobs.models import Job, JobStatus, NewEvent


@dataclass(frozen=True)
class SubmitRequest:
    job: Job  # the queued row to insert (its user_id is the submitter)
    event: NewEvent  # its first status event
    now: datetime
    rate_per_minute: int
    max_unfinished: int
    unfinished_statuses: frozenset[JobStatus]
    idempotency_key: str | None = None
    request_hash: str | None = None  # set when idempotency_key is
    storage_needed_bytes: int | None = None  # what the job's kept checkpoints will take, when known at submit
    storage_quota_bytes: int | None = None  # set when storage_needed_bytes is


@dataclass(frozen=True)
class Created:
    job: Job


@dataclass(frozen=True)
class Replayed:
    job: Job


@dataclass(frozen=True)
class KeyReused:
    """The Idempotency-Key was used before with a different request body."""


@dataclass(frozen=True)
class OverActiveCap:
    unfinished: int


@dataclass(frozen=True)
class SubmitRateLimited:
    retry_after_s: int


@dataclass(frozen=True)
class OverStorage:
    used_bytes: int


SubmitOutcome = Created | Replayed | KeyReused | OverActiveCap | SubmitRateLimited | OverStorage


def refilled_tokens(tokens: float, refilled_at: datetime, now: datetime, rate_per_minute: int) -> float:
    """The bucket's tokens at `now`, last set to `tokens` at `refilled_at`: never more than the burst."""
    elapsed_s = max(0.0, (now - refilled_at).total_seconds())
    return min(float(rate_per_minute), tokens + elapsed_s * rate_per_minute / 60.0)


def seconds_until_a_token(tokens: float, rate_per_minute: int) -> int:
    """Whole seconds until a bucket holding `tokens` (< 1) holds one again; at least 1. Rounded to microseconds
    first, so float noise cannot add a second."""
    return max(1, math.ceil(round((1.0 - tokens) * 60.0 / rate_per_minute, 6)))
