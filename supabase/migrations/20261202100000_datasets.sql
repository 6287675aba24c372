-- Uploaded datasets (one row per upload; the files live on the artifacts Volume) and what each user stores, for the
-- per-user storage limit. The backend writes with the service_role key; a signed-in browser may read its own
-- datasets, nothing else. Jobs name an upload as dataset://<id> in spec->dataset->>uri.

create table public.datasets (
    id text primary key,
    user_id text not null default (auth.jwt() ->> 'sub'),
    name text not null,
    bytes bigint not null,
    episodes integer not null,
    frames bigint not null,
    features jsonb not null,
    policy_features jsonb not null,
    created_at timestamptz not null default now(),
    constraint datasets_id_check check (id ~ '^ds_[0-9a-z]{26}$'),
    constraint datasets_sizes_check check (bytes >= 0 and episodes > 0 and frames > 0)
);

-- GET /datasets: a user's datasets newest first, with a (created_at, id) cursor.
create index datasets_user_created_idx on public.datasets (user_id, created_at desc, id desc);

-- The bytes each job's artifacts occupy, as its worker last measured them (after each checkpoint).
create table public.artifact_usage (
    job_id text primary key references public.jobs (id) on delete cascade,
    user_id text not null,
    bytes bigint not null check (bytes >= 0),
    updated_at timestamptz not null default now()
);
create index artifact_usage_user_idx on public.artifact_usage (user_id);

-- "Is this upload used by an active job": the unfinished jobs that name a dataset URI.
create index jobs_active_dataset_uri_idx on public.jobs (user_id, (spec -> 'dataset' ->> 'uri'))
    where status in ('queued', 'starting', 'running');

alter table public.datasets enable row level security;
alter table public.artifact_usage enable row level security;
revoke all on public.datasets, public.artifact_usage from anon, authenticated;
grant select on public.datasets to authenticated;
grant all on public.datasets, public.artifact_usage to service_role;

create policy "users read their own datasets" on public.datasets
    for select to authenticated
    using ((select auth.jwt() ->> 'sub') = user_id);
-- artifact_usage: no policy; only the backend reads or writes it.

-- Whether an unfinished (queued, starting or running) job of the owner names the dataset.
create function public.dataset_in_use(p_dataset_id text, p_user_id text) returns boolean
    language sql
    stable
    set search_path = ''
as $$
    select exists (
        select 1 from public.jobs j
        where j.user_id = p_user_id
          and j.status in ('queued', 'starting', 'running')
          and (j.spec -> 'dataset' ->> 'uri') = 'dataset://' || p_dataset_id
    )
$$;

-- Delete the owner's dataset unless an unfinished job names it, in one transaction: 'deleted', 'in_use' or
-- 'missing' (no such dataset of this owner). The row is locked first, so two deletes cannot both answer 'deleted'.
create function public.delete_dataset(p_dataset_id text, p_user_id text) returns text
    language plpgsql
    volatile
    set search_path = ''
as $$
begin
    perform 1 from public.datasets d where d.id = p_dataset_id and d.user_id = p_user_id for update;
    if not found then
        return 'missing';
    end if;
    if public.dataset_in_use(p_dataset_id, p_user_id) then
        return 'in_use';
    end if;
    delete from public.datasets d where d.id = p_dataset_id and d.user_id = p_user_id;
    return 'deleted';
end
$$;

-- What a user stores: their uploads plus their jobs' artifacts.
create function public.user_storage_bytes(p_user_id text) returns bigint
    language sql
    stable
    set search_path = ''
as $$
    select (coalesce((select sum(d.bytes) from public.datasets d where d.user_id = p_user_id), 0)
         + coalesce((select sum(a.bytes) from public.artifact_usage a where a.user_id = p_user_id), 0))::bigint
$$;

revoke execute on function public.dataset_in_use(text, text) from public, anon, authenticated;
revoke execute on function public.delete_dataset(text, text) from public, anon, authenticated;
revoke execute on function public.user_storage_bytes(text) from public, anon, authenticated;
grant execute on function public.dataset_in_use(text, text) to service_role;
grant execute on function public.delete_dataset(text, text) to service_role;
grant execute on function public.user_storage_bytes(text) to service_role;
