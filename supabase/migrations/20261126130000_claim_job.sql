-- Atomic claim for the dispatcher: queued -> starting (attempt + 1) only while the global and per-user caps on
-- active (starting or running) jobs hold. Counting and then updating in two requests lets two dispatchers both see
-- room and both claim; here one transaction-scoped advisory lock serialises every claim, so the counts a claim reads
-- cannot change under it (only a claim moves a job into an active status). Called as POST /rest/v1/rpc/claim_job.

create function public.claim_job(
    p_job_id text,
    p_max_active integer,
    p_max_active_per_user integer,
    p_now timestamptz
) returns setof public.jobs
    language plpgsql
    volatile
    set search_path = ''
as $$
declare
    v_user_id text;
begin
    perform pg_advisory_xact_lock(hashtext('robotrain.claim_job'));
    -- each statement below takes a fresh snapshot (read committed), so it sees every claim committed before the lock
    select j.user_id into v_user_id from public.jobs j where j.id = p_job_id and j.status = 'queued';
    if not found then
        return;
    end if;
    if (select count(*) from public.jobs j where j.status in ('starting', 'running')) >= p_max_active then
        return;
    end if;
    if (select count(*) from public.jobs j
        where j.status in ('starting', 'running') and j.user_id = v_user_id) >= p_max_active_per_user then
        return;
    end if;
    return query
        update public.jobs j
        set status = 'starting', attempt = j.attempt + 1, updated_at = p_now
        where j.id = p_job_id and j.status = 'queued'
        returning j.*;
end
$$;

-- Only the backend claims jobs.
revoke execute on function public.claim_job(text, integer, integer, timestamptz) from public, anon, authenticated;
grant execute on function public.claim_job(text, integer, integer, timestamptz) to service_role;
