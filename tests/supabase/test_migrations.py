"""supabase/migrations/*.sql against a fresh PostgreSQL 15 database prepared like a Supabase project, and the
row-level security they set up, checked in SQL the way PostgREST runs each request (role + JWT claims, one
transaction)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from tests.support import postgres

TABLES = ("jobs", "events", "metrics", "idempotency_keys", "submit_buckets")
# The functions of supabase/migrations that only the backend (service_role) may call.
BACKEND_FUNCTIONS = (
    "claim_job",
    "submit_job",
    "claim_jobs",
    "record_launches",
    "list_jobs",
    "list_owned_events",
    "list_owned_metrics",
)


@pytest.fixture(scope="module")
def database(postgres_cluster: postgres.Cluster) -> Iterator[str]:
    name = postgres.create_database(postgres_cluster, "migrations_test")
    with postgres_cluster.connect(name) as conn:
        for user, job_id in (("user_a", "job_a1"), ("user_a", "job_a2"), ("user_b", "job_b1")):
            conn.execute(
                "insert into jobs (id, user_id, name, status, spec) values (%s, %s, 'n', 'queued', '{}')",
                (job_id, user),
            )
            conn.execute("insert into events (job_id, kind, message) values (%s, 'status', 'queued')", (job_id,))
            conn.execute("insert into metrics (job_id, name, step, value) values (%s, 'loss', 1, 0.5)", (job_id,))
        conn.execute(
            "insert into idempotency_keys (user_id, key, request_hash, job_id) values ('user_a', 'k', 'h', 'job_a1')"
        )
    yield name
    with postgres_cluster.connect(autocommit=True) as admin:
        admin.execute("drop database migrations_test with (force)")


@contextmanager
def as_role(
    cluster: postgres.Cluster, database: str, role: str, sub: str | None = None
) -> Iterator[psycopg.Connection]:
    """One transaction as PostgREST runs it: logged in as authenticator, switched to `role`, claims set; rolled back."""
    claims = {"role": role} | ({"sub": sub} if sub else {})
    with cluster.connect(database, user="authenticator") as conn:
        conn.execute(
            "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
            (role, json.dumps(claims)),
        )
        try:
            yield conn
        finally:
            conn.rollback()


def job_ids(conn: psycopg.Connection, table: str = "jobs") -> list[str]:
    column = "id" if table == "jobs" else "job_id"
    return [row[0] for row in conn.execute(f"select {column} from {table} order by 1")]


# --- the migrations -----------------------------------------------------------------------------------------------


def test_migration_files_are_named_as_the_supabase_cli_names_them() -> None:
    files = postgres.migration_files()
    assert files
    for path in files:
        assert re.fullmatch(r"\d{14}_[a-z0-9_]+\.sql", path.name), path.name


def test_every_table_has_row_level_security_enabled(postgres_cluster, database) -> None:
    with postgres_cluster.connect(database) as conn:
        rows = dict(
            conn.execute(
                "select relname, relrowsecurity from pg_class where relnamespace = 'public'::regnamespace "
                "and relkind = 'r'"
            ).fetchall()
        )
    assert {table: rows.get(table) for table in TABLES} == dict.fromkeys(TABLES, True)


def test_jobs_are_published_for_realtime(postgres_cluster, database) -> None:
    with postgres_cluster.connect(database) as conn:
        published = conn.execute(
            "select schemaname, tablename from pg_publication_tables where pubname = 'supabase_realtime'"
        ).fetchall()
    assert published == [("public", "jobs")]


def test_the_list_drain_and_event_queries_have_indexes(postgres_cluster, database) -> None:
    with postgres_cluster.connect(database) as conn:
        definitions = [row[0] for row in conn.execute("select indexdef from pg_indexes where schemaname = 'public'")]
    text = "\n".join(definitions)
    assert "ON public.jobs USING btree (user_id, created_at DESC, id DESC)" in text
    assert "ON public.jobs USING btree (user_id, status, created_at DESC, id DESC)" in text
    assert "ON public.jobs USING btree (status, created_at, id)" in text
    assert "ON public.events USING btree (job_id, id)" in text
    assert "ON public.metrics USING btree (job_id, name, step)" in text
    assert "ON public.idempotency_keys USING btree (user_id, key)" in text


def test_an_unknown_status_is_rejected_by_the_check_constraint(postgres_cluster, database) -> None:
    with postgres_cluster.connect(database) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("update jobs set status = 'exploded' where id = 'job_a1'")


def test_the_trigger_bumps_updated_at_unless_the_writer_sets_it(postgres_cluster, database) -> None:
    with postgres_cluster.connect(database) as conn:
        before = conn.execute("select updated_at from jobs where id = 'job_a1'").fetchone()[0]
        conn.execute("select pg_sleep(0.01)")
        conn.commit()
        bumped = conn.execute("update jobs set name = 'renamed' where id = 'job_a1' returning updated_at").fetchone()[0]
        explicit = conn.execute(
            "update jobs set updated_at = '2030-01-01T00:00:00Z' where id = 'job_a1' returning updated_at"
        ).fetchone()[0]
        conn.rollback()
    assert bumped > before
    assert explicit.year == 2030


def test_the_migrations_are_not_meant_to_be_reapplied(postgres_cluster, database) -> None:
    # `supabase db push` records applied versions and runs each file once; a second run fails loudly instead of
    # silently diverging.
    with postgres_cluster.connect(database) as conn, pytest.raises(psycopg.errors.DuplicateTable):
        conn.execute(postgres.migration_files()[0].read_text())


# --- row-level security -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("table", ["jobs", "events", "metrics"])
def test_a_signed_in_user_reads_only_their_own_rows(postgres_cluster, database, table) -> None:
    with as_role(postgres_cluster, database, "authenticated", "user_a") as conn:
        assert job_ids(conn, table) == ["job_a1", "job_a2"]
    with as_role(postgres_cluster, database, "authenticated", "user_b") as conn:
        assert job_ids(conn, table) == ["job_b1"]


def test_a_user_cannot_insert_a_job_for_another_user_or_for_themselves(postgres_cluster, database) -> None:
    for owner in ("user_b", "user_a"):
        with (
            as_role(postgres_cluster, database, "authenticated", "user_a") as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute(
                "insert into jobs (id, user_id, name, status, spec) values ('job_x', %s, 'n', 'queued', '{}')",
                (owner,),
            )


def test_a_user_cannot_update_or_delete_jobs_even_their_own(postgres_cluster, database) -> None:
    for statement in (
        "update jobs set status = 'cancelled' where id = 'job_a1'",
        "update jobs set status = 'cancelled' where id = 'job_b1'",
        "delete from jobs where id = 'job_a1'",
        "insert into events (job_id, kind, message) values ('job_a1', 'log', 'x')",
    ):
        with (
            as_role(postgres_cluster, database, "authenticated", "user_a") as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute(statement)


def test_with_a_select_grant_rls_alone_still_hides_other_users_rows(postgres_cluster, database) -> None:
    # defence in depth: even if a later migration widened the grants, the policy keeps user_b's rows away
    with as_role(postgres_cluster, database, "authenticated", "user_a") as conn:
        assert conn.execute("select count(*) from jobs where user_id = 'user_b'").fetchone()[0] == 0
        assert conn.execute("select count(*) from jobs where id = 'job_b1'").fetchone()[0] == 0


def test_a_token_without_a_sub_sees_nothing(postgres_cluster, database) -> None:
    with as_role(postgres_cluster, database, "authenticated") as conn:
        assert job_ids(conn) == []


@pytest.mark.parametrize("table", TABLES)
def test_anon_is_refused_every_table(postgres_cluster, database, table) -> None:
    with as_role(postgres_cluster, database, "anon") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(f"select * from {table}")


def test_idempotency_keys_are_invisible_to_signed_in_users(postgres_cluster, database) -> None:
    with (
        as_role(postgres_cluster, database, "authenticated", "user_a") as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("select * from idempotency_keys")


def test_the_service_role_sees_and_writes_everything(postgres_cluster, database) -> None:
    with as_role(postgres_cluster, database, "service_role") as conn:
        assert job_ids(conn) == ["job_a1", "job_a2", "job_b1"]
        assert conn.execute("select count(*) from idempotency_keys").fetchone()[0] == 1
        conn.execute("update jobs set status = 'starting' where id = 'job_b1'")
        conn.execute("insert into events (job_id, kind, message) values ('job_b1', 'status', 'starting')")


@pytest.mark.parametrize("function", BACKEND_FUNCTIONS)
def test_only_the_service_role_may_call_the_backend_functions(postgres_cluster, database, function) -> None:
    with postgres_cluster.connect(database) as conn:
        [oid] = conn.execute(
            "select p.oid from pg_proc p where p.pronamespace = 'public'::regnamespace and p.proname = %s", (function,)
        ).fetchone()
        allowed = {
            role: conn.execute("select has_function_privilege(%s, %s, 'execute')", (role, oid)).fetchone()[0]
            for role in ("anon", "authenticated", "service_role")
        }
    assert allowed == {"anon": False, "authenticated": False, "service_role": True}


def test_submit_buckets_are_invisible_to_signed_in_users(postgres_cluster, database) -> None:
    with (
        as_role(postgres_cluster, database, "authenticated", "user_a") as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("select * from submit_buckets")
