"""The per-user limit on job submissions (POST /jobs and POST /jobs/{id}/retry): a token bucket per user holding
ROBOTRAIN_SUBMIT_RATE_PER_MINUTE tokens, refilled continuously at that rate. A request that finds the bucket empty
is refused with 429 and a Retry-After saying when the next token arrives.

The buckets live in this process. With several API containers each keeps its own, so a user may submit up to
N x the rate across N containers; the per-user cap on active jobs (checked against the store at submit) is the
limit that holds across containers.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from robotrain.api.deps import CurrentUser
from robotrain.errors import RateLimited

# Past this many tracked users, buckets that have refilled completely (users idle for a minute) are dropped: a full
# bucket carries no state that a new one would not have.
_PRUNE_ABOVE = 10_000


class SubmitRateLimiter:
    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic):
        if per_minute < 1:
            raise ValueError("the submit rate must be at least 1 per minute")
        self.capacity = float(per_minute)
        self._refill_per_s = per_minute / 60.0
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # user -> (tokens, at)

    def take(self, user_id: str) -> None:
        """Spend one token of the user's bucket, or raise RateLimited with the seconds until one is back."""
        with self._lock:
            now = self._clock()
            tokens = self._tokens(user_id, now)
            if tokens < 1.0:
                self._buckets[user_id] = (tokens, now)
                wait_s = math.ceil((1.0 - tokens) / self._refill_per_s)
                raise RateLimited(
                    f"too many job submissions: at most {int(self.capacity)} per minute; retry in {wait_s}s",
                    retry_after_s=wait_s,
                )
            self._buckets[user_id] = (tokens - 1.0, now)
            if len(self._buckets) > _PRUNE_ABOVE:
                self._prune(now)

    def _tokens(self, user_id: str, now: float) -> float:
        tokens, at = self._buckets.get(user_id, (self.capacity, now))
        return min(self.capacity, tokens + (now - at) * self._refill_per_s)

    def _prune(self, now: float) -> None:
        full = [user for user in self._buckets if self._tokens(user, now) >= self.capacity]
        for user in full:
            del self._buckets[user]


def get_submit_limiter(request: Request) -> SubmitRateLimiter:
    return request.app.state.submit_limiter


def limit_submits(user: CurrentUser, limiter: Annotated[SubmitRateLimiter, Depends(get_submit_limiter)]) -> None:
    """Route dependency: charges the caller's bucket (FastAPI resolves CurrentUser once per request, so the token
    is verified once however many dependencies ask for the user)."""
    limiter.take(user)


SubmitRateLimit = Depends(limit_submits)
