-- What a Supabase project provides before any migration runs, recreated on plain PostgreSQL 15 for the tests:
-- the API roles, `auth.jwt()` exactly as Supabase defines it, the default grants Supabase gives the API roles on
-- public, and the realtime publication. Run once per database, as a superuser, before supabase/migrations/*.sql.
-- Roles are cluster-wide, so their creation is guarded; everything else assumes a fresh database.

do $$
begin
    if not exists (select from pg_roles where rolname = 'anon') then
        create role anon nologin noinherit;
    end if;
    if not exists (select from pg_roles where rolname = 'authenticated') then
        create role authenticated nologin noinherit;
    end if;
    if not exists (select from pg_roles where rolname = 'service_role') then
        create role service_role nologin noinherit bypassrls;
    end if;
    -- PostgREST logs in as `authenticator` and switches to the JWT's role for each request.
    if not exists (select from pg_roles where rolname = 'authenticator') then
        create role authenticator login noinherit;
    end if;
end
$$;

grant anon, authenticated, service_role to authenticator;

grant usage on schema public to anon, authenticated, service_role;
-- Supabase grants everything on new public objects to the API roles; row-level security is what protects rows.
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;

create schema auth;
grant usage on schema auth to anon, authenticated, service_role;

-- supabase/auth migrations/20220531120530_add_auth_jwt_function.up.sql
create or replace function auth.jwt() returns jsonb
    language sql stable
as $$
    select coalesce(
        nullif(current_setting('request.jwt.claim', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')
    )::jsonb
$$;
grant execute on function auth.jwt() to anon, authenticated, service_role;

create publication supabase_realtime;
