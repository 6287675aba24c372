"""The datasets migration's row-level security, checked in SQL as PostgREST runs a request (role + claims, one
transaction): a signed-in user reads only their own datasets, never storage records, and cannot call the backend's
functions."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.support.supabase_env import SupabaseStack


def as_user(stack: SupabaseStack, sub: str):
    conn = stack.cluster.connect(stack.database, user="authenticator")
    conn.execute(
        "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
        (json.dumps({"role": "authenticated", "sub": sub}),),
    )
    return conn


def test_users_read_only_their_own_datasets_and_nothing_else_of_the_domain(supabase: SupabaseStack) -> None:
    for user, dataset_id in (("user_a", "ds_" + "a" * 26), ("user_b", "ds_" + "b" * 26)):
        supabase.admin.execute(
            "insert into datasets (id, user_id, name, bytes, episodes, frames, features, policy_features) "
            "values (%s, %s, 'n', 10, 1, 5, '{}', '{}')",
            (dataset_id, user),
        )
        supabase.admin.execute(
            "insert into jobs (id, user_id, name, status, spec) values (%s, %s, 'n', 'queued', '{}')",
            (f"job_{user}", user),
        )
        supabase.admin.execute(
            "insert into artifact_usage (job_id, user_id, bytes) values (%s, %s, 5)", (f"job_{user}", user)
        )
    with as_user(supabase, "user_a") as conn:
        assert [row[0] for row in conn.execute("select id from datasets")] == ["ds_" + "a" * 26]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select * from artifact_usage")
    with as_user(supabase, "user_a") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("delete from datasets")
    for call in ("select user_storage_bytes('user_b')", "select delete_dataset('ds_x', 'user_b')"):
        with as_user(supabase, "user_a") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(call)
