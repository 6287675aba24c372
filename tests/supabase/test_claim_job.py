"""claim_job (supabase/migrations/20261126130000_claim_job.sql) and the drain's batch form, claim_jobs
(20261202120000_one_round_trip.sql), under a race lined up on purpose, through the Supabase store, the PostgREST-subset
server and real PostgreSQL.

Threads that merely start at the same moment rarely overlap inside the function, so a claim_job without its advisory
lock used to pass a plain race test most of the time. Here the test holds `LOCK TABLE jobs IN SHARE MODE` from its own
connection: every claim can read (its counts) but none can write (its UPDATE), so all of them line up in PostgreSQL
before the lock is released. With the advisory lock, the first claim waits at its UPDATE holding the advisory lock
and the others wait for that lock, then each counts what the previous one committed. Without it, every claim has
already counted zero active jobs when the writes start, and every one succeeds: the caps break every time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from robotrain.adapters.supabase_store import SupabaseJobStore
from robotrain.jobs.claims import Claimed
from robotrain.jobs.models import EventKind, Job, NewEvent
from tests.robotrain.adapters.store_contract import make_job
from tests.support.supabase_env import SupabaseStack

USERS = ("user_a", "user_b", "user_c")
JOBS_PER_USER = 4
MAX_ACTIVE = 4
MAX_ACTIVE_PER_USER = 2
BATCH = 2  # jobs per claim_jobs call: each call must also see what its own earlier claims took


@pytest.fixture
def store(supabase: SupabaseStack) -> Iterator[SupabaseJobStore]:
    store = SupabaseJobStore(supabase.url, supabase.service_key, timeout_s=120)
    yield store
    store.close()


def blocked_backends(admin: psycopg.Connection) -> int:
    """Backends of this database waiting for a lock (each waits for exactly one)."""
    return admin.execute(
        "select count(*) from pg_locks l join pg_stat_activity a on a.pid = l.pid "
        "where not l.granted and a.datname = current_database()"
    ).fetchone()[0]


def claim_one_by_one(store: SupabaseJobStore, jobs: list[Job]) -> list:
    return [
        lambda job=job: [store.claim(job.id, max_active=MAX_ACTIVE, max_active_per_user=MAX_ACTIVE_PER_USER)]
        for job in jobs
    ]


def claim_in_batches(store: SupabaseJobStore, jobs: list[Job]) -> list:
    event = NewEvent(EventKind.STATUS, "claimed", {})

    def claim(batch: list[Job]) -> list[Job | None]:
        outcomes = store.claim_many(
            [job.id for job in batch], max_active=MAX_ACTIVE, max_active_per_user=MAX_ACTIVE_PER_USER, event=event
        ).outcomes
        return [outcome.job if isinstance(outcome, Claimed) else None for outcome in outcomes.values()]

    # batches that mix users, as a drain's receive does
    return [lambda batch=jobs[i :: BATCH * 3]: claim(batch) for i in range(BATCH * 3)]


@pytest.mark.parametrize("claims_for", [claim_one_by_one, claim_in_batches], ids=["claim_job", "claim_jobs"])
def test_claims_lined_up_inside_postgresql_never_exceed_either_cap(
    supabase: SupabaseStack, store: SupabaseJobStore, claims_for
) -> None:
    jobs = [store.create(make_job(user)) for user in USERS for _ in range(JOBS_PER_USER)]
    calls = claims_for(store, jobs)
    with supabase.cluster.connect(supabase.database) as holder, ThreadPoolExecutor(len(calls)) as pool:
        holder.execute("lock table public.jobs in share mode")  # claims may read, none may write
        try:
            claims = [pool.submit(call) for call in calls]
            deadline = time.monotonic() + 120  # generous: only a broken setup gets near it
            while blocked_backends(supabase.admin) < len(calls):
                failed = [claim.exception() for claim in claims if claim.done()]
                assert not failed, f"a claim ended before the lock was released: {failed}"
                assert time.monotonic() < deadline, "the claims never all reached PostgreSQL"
                time.sleep(0.05)
        finally:
            holder.rollback()  # release: the claims now run one after another, or all at once
        won = [job for claim in claims for job in claim.result(timeout=120)]

    assert len(won) == len(jobs)
    assert sum(job is not None for job in won) == MAX_ACTIVE
    # the caps, checked in SQL on what PostgreSQL committed
    active = supabase.admin.execute(
        "select user_id, count(*) from public.jobs where status in ('starting', 'running') group by user_id"
    ).fetchall()
    assert sum(count for _, count in active) == MAX_ACTIVE, active
    assert max(count for _, count in active) <= MAX_ACTIVE_PER_USER, active
    attempts = supabase.admin.execute("select attempt, count(*) from public.jobs group by attempt").fetchall()
    assert sorted(attempts) == [(0, len(jobs) - MAX_ACTIVE), (1, MAX_ACTIVE)]
