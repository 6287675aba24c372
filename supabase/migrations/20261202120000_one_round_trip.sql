-- One round trip per request (issue #13): each API request and each drain batch is one call of one function here,
-- so a request costs one network round trip to Supabase however many rows it reads or writes. Every function is
-- called by the backend only (service_role), as POST /rest/v1/rpc/<name>, and runs in that request's transaction.
--
-- - submit_job: a user's submit (idempotency key, per-user submit rate bucket, cap on unfinished jobs, the job and
--   its first event), serialised per user by a lock on the user's bucket row;
-- - claim_jobs: the drain's claims for a batch of messages, under claim_job's advisory lock, with their events;
-- - record_launches: the launched workers' handles of a batch, fenced on each job's attempt, with their events;
-- - list_jobs, list_owned_events, list_owned_metrics: the reads that needed two requests (a cursor without `or=`,
--   an ownership check before a list).

-- The per-user submit rate limit (ROBOTRAIN_SUBMIT_RATE_PER_MINUTE) as a token bucket per user, kept here so it
-- holds across API containers. Only the backend reads or writes it.
create table public.submit_buckets (
    user_id text primary key,
    tokens double precision not null,
    refilled_at timestamptz not null
);
alter table public.submit_buckets enable row level security;
revoke all on public.submit_buckets from anon, authenticated;
grant all on public.submit_buckets to service_role;

-- The rules and their order are robotrain.jobs.submission's (the SQLite store runs the same steps). Answers
-- {"outcome": "created" | "replayed", "job": {...}}, {"outcome": "key_reused"},
-- {"outcome": "over_active_cap", "unfinished": n}, {"outcome": "rate_limited", "retry_after_s": n} or
-- {"outcome": "over_storage", "used_bytes": n}.
create function public.submit_job(
    p_job jsonb,
    p_event_kind text,
    p_event_message text,
    p_event_data jsonb,
    p_now timestamptz,
    p_rate_per_minute integer,
    p_max_unfinished integer,
    p_unfinished_statuses jsonb,
    p_idempotency_key text default null,
    p_request_hash text default null,
    p_storage_needed bigint default null,
    p_storage_quota bigint default null
) returns jsonb
    language plpgsql
    volatile
    set search_path = ''
as $$
declare
    v_user_id text := p_job ->> 'user_id';
    v_job public.jobs;
    v_stored_hash text;
    v_stored_job_id text;
    v_tokens double precision;
    v_refilled_at timestamptz;
    v_unfinished integer;
    v_used bigint;
begin
    -- The user's bucket row, locked until the call ends: one user's submits run one at a time from here on, so the
    -- key, the bucket and the cap cannot be passed by two concurrent submits together.
    insert into public.submit_buckets (user_id, tokens, refilled_at)
        values (v_user_id, p_rate_per_minute, p_now)
        on conflict (user_id) do nothing;
    select b.tokens, b.refilled_at into v_tokens, v_refilled_at
        from public.submit_buckets b where b.user_id = v_user_id for update;

    -- 1. this very call was applied before and its answer lost: answer the same
    select * into v_job from public.jobs j where j.id = p_job ->> 'id';
    if found and v_job.user_id = v_user_id then
        return jsonb_build_object('outcome', 'created', 'job', to_jsonb(v_job));
    end if;

    -- 2. the Idempotency-Key
    if p_idempotency_key is not null then
        select k.request_hash, k.job_id into v_stored_hash, v_stored_job_id
            from public.idempotency_keys k where k.user_id = v_user_id and k.key = p_idempotency_key;
        if found then
            if v_stored_hash is distinct from p_request_hash then
                return jsonb_build_object('outcome', 'key_reused');
            end if;
            select * into v_job from public.jobs j where j.id = v_stored_job_id;
            if found then
                return jsonb_build_object('outcome', 'replayed', 'job', to_jsonb(v_job));
            end if;
            -- the key's job is gone (deleted by hand): the key is taken over below
        end if;
    end if;

    -- 3. the bucket: refilled continuously, never above the burst; a clock that steps back refills nothing
    v_tokens := least(
        p_rate_per_minute::double precision,
        v_tokens + greatest(0, extract(epoch from p_now - v_refilled_at))::double precision * p_rate_per_minute / 60.0
    );
    if v_tokens < 1 then
        return jsonb_build_object(
            'outcome', 'rate_limited',
            'retry_after_s', greatest(1, ceil(round(((1 - v_tokens) * 60.0 / p_rate_per_minute)::numeric, 6)))::integer
        );
    end if;

    -- 4. the cap on unfinished jobs
    select count(*) into v_unfinished from public.jobs j
        where j.user_id = v_user_id and j.status in (select jsonb_array_elements_text(p_unfinished_statuses));
    if v_unfinished >= p_max_unfinished then
        return jsonb_build_object('outcome', 'over_active_cap', 'unfinished', v_unfinished);
    end if;

    -- 4b. what the job's checkpoints will need must fit in what the user has left of their storage
    if p_storage_needed is not null then
        v_used := public.user_storage_bytes(v_user_id);
        if v_used + p_storage_needed > p_storage_quota then
            return jsonb_build_object('outcome', 'over_storage', 'used_bytes', v_used);
        end if;
    end if;

    -- 5. the job, its first event, the key, the spent token
    insert into public.jobs (
        id, user_id, name, status, spec, attempt, retry_of, created_at, updated_at, started_at, finished_at,
        progress, result, error, launch_handle, heartbeat_at, enqueued_at
    )
    select r.id, r.user_id, r.name, r.status, r.spec, r.attempt, r.retry_of, r.created_at, r.updated_at, r.started_at,
           r.finished_at, r.progress, r.result, r.error, r.launch_handle, r.heartbeat_at, r.enqueued_at
        from jsonb_populate_record(null::public.jobs, p_job) r
    returning * into v_job;
    insert into public.events (job_id, at, kind, message, data)
        values (v_job.id, p_now, p_event_kind, p_event_message, p_event_data);
    if p_idempotency_key is not null then
        insert into public.idempotency_keys (user_id, key, request_hash, job_id, created_at)
            values (v_user_id, p_idempotency_key, p_request_hash, v_job.id, p_now)
            on conflict (user_id, key) do update
                set request_hash = excluded.request_hash, job_id = excluded.job_id, created_at = excluded.created_at;
    end if;
    update public.submit_buckets b
        set tokens = v_tokens - 1, refilled_at = greatest(v_refilled_at, p_now)
        where b.user_id = v_user_id;
    return jsonb_build_object('outcome', 'created', 'job', to_jsonb(v_job));
end
$$;

-- claim_job for a batch, in the order given, under the same advisory lock (so single and batch claims serialise
-- with each other) and with the same caps, counting the claims made earlier in the call. Each claim's status event
-- (p_event_* with the claimed attempt added) is written in the same transaction. Answers
-- {"active": n, "outcomes": [{"id", "outcome": "claimed", "job"} | {"id", "outcome": "not_queued", "status"} |
-- {"id", "outcome": "missing"} | {"id", "outcome": "capped", "scope": "global" | "user", "job"}, ...]}.
create function public.claim_jobs(
    p_job_ids jsonb,
    p_max_active integer,
    p_max_active_per_user integer,
    p_now timestamptz,
    p_event_kind text,
    p_event_message text,
    p_event_data jsonb
) returns jsonb
    language plpgsql
    volatile
    set search_path = ''
as $$
declare
    v_id text;
    v_job public.jobs;
    v_active integer;
    v_mine integer;
    v_outcome jsonb;
    v_outcomes jsonb := '[]'::jsonb;
begin
    perform pg_advisory_xact_lock(hashtext('robotrain.claim_job'));
    select count(*) into v_active from public.jobs j where j.status in ('starting', 'running');
    for v_id in select t.value from jsonb_array_elements_text(p_job_ids) with ordinality as t(value, n) order by t.n
    loop
        select * into v_job from public.jobs j where j.id = v_id;
        if not found then
            v_outcome := jsonb_build_object('id', v_id, 'outcome', 'missing');
        elsif v_job.status <> 'queued' then
            v_outcome := jsonb_build_object('id', v_id, 'outcome', 'not_queued', 'status', v_job.status);
        elsif v_active >= p_max_active then
            v_outcome := jsonb_build_object('id', v_id, 'outcome', 'capped', 'scope', 'global', 'job', to_jsonb(v_job));
        else
            select count(*) into v_mine from public.jobs j
                where j.status in ('starting', 'running') and j.user_id = v_job.user_id;
            if v_mine >= p_max_active_per_user then
                v_outcome := jsonb_build_object('id', v_id, 'outcome', 'capped', 'scope', 'user', 'job', to_jsonb(v_job));
            else
                update public.jobs j
                    set status = 'starting', attempt = j.attempt + 1, updated_at = p_now
                    where j.id = v_id and j.status = 'queued'
                    returning j.* into v_job;
                insert into public.events (job_id, at, kind, message, data)
                    values (v_id, p_now, p_event_kind, p_event_message,
                            p_event_data || jsonb_build_object('attempt', v_job.attempt));
                v_active := v_active + 1;
                v_outcome := jsonb_build_object('id', v_id, 'outcome', 'claimed', 'job', to_jsonb(v_job));
            end if;
        end if;
        v_outcomes := v_outcomes || jsonb_build_array(v_outcome);
    end loop;
    return jsonb_build_object('active', v_active, 'outcomes', v_outcomes);
end
$$;

-- Each launch [{"job_id", "attempt", "handle", "event_kind", "event_message", "event_data"}, ...] records its handle
-- while the job is still in one of p_expected at that attempt, and then its event. Answers the recorded job ids.
create function public.record_launches(
    p_launches jsonb,
    p_expected jsonb,
    p_now timestamptz
) returns jsonb
    language plpgsql
    volatile
    set search_path = ''
as $$
declare
    v_launch jsonb;
    v_id text;
    v_recorded jsonb := '[]'::jsonb;
begin
    for v_launch in select t.value from jsonb_array_elements(p_launches) with ordinality as t(value, n) order by t.n
    loop
        v_id := null;
        update public.jobs j
            set launch_handle = v_launch ->> 'handle', updated_at = p_now
            where j.id = v_launch ->> 'job_id'
              and j.attempt = (v_launch ->> 'attempt')::integer
              and j.status in (select jsonb_array_elements_text(p_expected))
            returning j.id into v_id;
        if v_id is not null then
            insert into public.events (job_id, at, kind, message, data)
                values (v_id, p_now, v_launch ->> 'event_kind', v_launch ->> 'event_message',
                        coalesce(v_launch -> 'event_data', '{}'::jsonb));
            v_recorded := v_recorded || jsonb_build_array(v_id);
        end if;
    end loop;
    return v_recorded;
end
$$;

-- GET /jobs: a user's jobs newest first, optionally of one status, strictly after a (created_at, id) cursor. The
-- row comparison walks jobs_user_created_idx; without a cursor 'infinity' lets every row through.
create function public.list_jobs(
    p_user_id text,
    p_limit integer,
    p_status text default null,
    p_after_created timestamptz default null,
    p_after_id text default null
) returns setof public.jobs
    language sql
    stable
    set search_path = ''
as $$
    select j.* from public.jobs j
    where j.user_id = p_user_id
      and (p_status is null or j.status = p_status)
      and (j.created_at, j.id) < (coalesce(p_after_created, 'infinity'::timestamptz), coalesce(p_after_id, ''))
    order by j.created_at desc, j.id desc
    limit p_limit
$$;

-- GET /jobs/{id}/events: {"owned": false} when the job is missing or another user's, else
-- {"owned": true, "events": [...]} (ordered by id, after p_after, at most p_limit).
create function public.list_owned_events(
    p_job_id text,
    p_user_id text,
    p_after bigint,
    p_limit integer
) returns jsonb
    language sql
    stable
    set search_path = ''
as $$
    select case
        when not exists (select 1 from public.jobs j where j.id = p_job_id and j.user_id = p_user_id)
            then jsonb_build_object('owned', false)
        else jsonb_build_object('owned', true, 'events', coalesce((
            select jsonb_agg(to_jsonb(e) order by e.id)
            from (
                select * from public.events e where e.job_id = p_job_id and e.id > p_after order by e.id limit p_limit
            ) e
        ), '[]'::jsonb))
    end
$$;

-- GET /jobs/{id}/metrics: {"owned": false}, or {"owned": true, "series": {name: [[step, value], ...]}} with every
-- point in one answer (a single JSON value is not cut by Supabase's max-rows). NaN and +-Infinity come as strings.
create function public.list_owned_metrics(
    p_job_id text,
    p_user_id text
) returns jsonb
    language sql
    stable
    set search_path = ''
as $$
    select case
        when not exists (select 1 from public.jobs j where j.id = p_job_id and j.user_id = p_user_id)
            then jsonb_build_object('owned', false)
        else jsonb_build_object('owned', true, 'series', coalesce((
            select jsonb_object_agg(s.name, s.points)
            from (
                select m.name, jsonb_agg(jsonb_build_array(m.step, m.value) order by m.step) as points
                from public.metrics m where m.job_id = p_job_id group by m.name
            ) s
        ), '{}'::jsonb))
    end
$$;

-- Only the backend calls these (Supabase grants execute on new functions to the API roles by default).
revoke execute on function public.submit_job(jsonb, text, text, jsonb, timestamptz, integer, integer, jsonb, text, text, bigint, bigint)
    from public, anon, authenticated;
revoke execute on function public.claim_jobs(jsonb, integer, integer, timestamptz, text, text, jsonb)
    from public, anon, authenticated;
revoke execute on function public.record_launches(jsonb, jsonb, timestamptz) from public, anon, authenticated;
revoke execute on function public.list_jobs(text, integer, text, timestamptz, text) from public, anon, authenticated;
revoke execute on function public.list_owned_events(text, text, bigint, integer) from public, anon, authenticated;
revoke execute on function public.list_owned_metrics(text, text) from public, anon, authenticated;
grant execute on function public.submit_job(jsonb, text, text, jsonb, timestamptz, integer, integer, jsonb, text, text, bigint, bigint)
    to service_role;
grant execute on function public.claim_jobs(jsonb, integer, integer, timestamptz, text, text, jsonb) to service_role;
grant execute on function public.record_launches(jsonb, jsonb, timestamptz) to service_role;
grant execute on function public.list_jobs(text, integer, text, timestamptz, text) to service_role;
grant execute on function public.list_owned_events(text, text, bigint, integer) to service_role;
grant execute on function public.list_owned_metrics(text, text) to service_role;
