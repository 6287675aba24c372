-- The job store: jobs, their event timeline, their metric series, and idempotency keys for POST /jobs.
-- The backend writes everything with the service_role key (which bypasses RLS). Browsers signed in with Clerk may
-- only read their own jobs, events and metrics; they never write (all writes go through the API, which validates
-- specs and enforces the state machine).

create table public.jobs (
    id text primary key,
    user_id text not null default (auth.jwt() ->> 'sub'),
    name text not null,
    status text not null,
    spec jsonb not null,
    attempt integer not null default 0,
    retry_of text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    started_at timestamptz,
    finished_at timestamptz,
    progress jsonb not null default '{"step": 0, "total_steps": 0, "metrics": {}}'::jsonb,
    result jsonb,
    error jsonb,
    launch_handle text,
    heartbeat_at timestamptz,
    enqueued_at timestamptz,
    constraint jobs_status_check
        check (status in ('queued', 'starting', 'running', 'succeeded', 'failed', 'cancelled')),
    constraint jobs_attempt_check check (attempt >= 0)
);

-- GET /jobs: a user's jobs newest first, optionally by status, with a (created_at, id) cursor.
create index jobs_user_created_idx on public.jobs (user_id, created_at desc, id desc);
create index jobs_user_status_created_idx on public.jobs (user_id, status, created_at desc, id desc);
-- The dispatcher's drain and sweep: jobs of any user in some statuses, oldest first; also the active-jobs counts.
create index jobs_status_created_idx on public.jobs (status, created_at, id);
create index jobs_retry_of_idx on public.jobs (retry_of) where retry_of is not null;

create table public.events (
    id bigint generated always as identity primary key,
    job_id text not null references public.jobs (id) on delete cascade,
    at timestamptz not null default now(),
    kind text not null,
    message text not null,
    data jsonb not null default '{}'::jsonb
);
create index events_job_id_idx on public.events (job_id, id);

create table public.metrics (
    job_id text not null references public.jobs (id) on delete cascade,
    name text not null,
    step integer not null,
    -- NaN and +-Infinity are valid float8 values (a diverged loss is worth keeping)
    value double precision not null,
    primary key (job_id, name, step)
);

create table public.idempotency_keys (
    user_id text not null,
    key text not null,
    request_hash text not null,
    job_id text not null,
    created_at timestamptz not null default now(),
    primary key (user_id, key)
);
create index idempotency_keys_created_idx on public.idempotency_keys (created_at);

-- The store sets updated_at itself (from the same clock as its other timestamps). The trigger bumps it for any
-- other writer (SQL editor, dashboard, a future RPC) that changes a row without touching updated_at.
create function public.jobs_touch_updated_at() returns trigger
    language plpgsql
    set search_path = ''
as $$
begin
    if new.updated_at is not distinct from old.updated_at then
        new.updated_at := now();
    end if;
    return new;
end
$$;
revoke execute on function public.jobs_touch_updated_at() from public, anon, authenticated;

create trigger jobs_touch_updated_at
    before update on public.jobs
    for each row execute function public.jobs_touch_updated_at();

-- Row-level security. No insert/update/delete policies exist, so even with a grant the API roles cannot write;
-- the grants below are narrowed as well, so a mistake in one layer is caught by the other.
alter table public.jobs enable row level security;
alter table public.events enable row level security;
alter table public.metrics enable row level security;
alter table public.idempotency_keys enable row level security;

revoke all on public.jobs, public.events, public.metrics, public.idempotency_keys from anon, authenticated;
grant select on public.jobs, public.events, public.metrics to authenticated;
grant all on public.jobs, public.events, public.metrics, public.idempotency_keys to service_role;

-- Clerk user ids ("user_...") are not uuids, so `auth.uid()` cannot be used; compare the JWT's `sub` as text.
-- `(select auth.jwt() ...)` is evaluated once per statement instead of once per row.
create policy "users read their own jobs" on public.jobs
    for select to authenticated
    using ((select auth.jwt() ->> 'sub') = user_id);

create policy "users read their own jobs' events" on public.events
    for select to authenticated
    using (exists (
        select 1 from public.jobs j where j.id = events.job_id and j.user_id = (select auth.jwt() ->> 'sub')
    ));

create policy "users read their own jobs' metrics" on public.metrics
    for select to authenticated
    using (exists (
        select 1 from public.jobs j where j.id = metrics.job_id and j.user_id = (select auth.jwt() ->> 'sub')
    ));
-- idempotency_keys: no policy at all; only the backend (service_role) reads or writes it.

-- Realtime Postgres Changes: a signed-in frontend can subscribe to its jobs' status (RLS applies to the stream).
alter publication supabase_realtime add table public.jobs;
