-- Personal API keys (robotrain.apikeys): long-lived bearer tokens `rt_...` a signed-in user creates for the CLI and
-- scripts. The secret is never stored, only its sha256 (hex), unique so that authentication is one index probe.
-- Only the backend (service_role) reads or writes this table: no policy lets a browser see even the hashes.

create table public.api_keys (
    id text primary key,
    user_id text not null,
    name text not null,
    key_hash text not null unique,
    created_at timestamptz not null default now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    constraint api_keys_name_check check (char_length(name) between 1 and 100),
    constraint api_keys_hash_check check (key_hash ~ '^[0-9a-f]{64}$')
);

-- GET /api-keys: a user's keys newest first.
create index api_keys_user_created_idx on public.api_keys (user_id, created_at desc, id desc);

alter table public.api_keys enable row level security;
revoke all on public.api_keys from anon, authenticated;
grant all on public.api_keys to service_role;
-- api_keys: no policy at all; only the backend (service_role) reads or writes it.
