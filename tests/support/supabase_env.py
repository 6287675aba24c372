"""Session fixtures for everything Supabase: one throwaway PostgreSQL 15 cluster, one database with the bootstrap and
supabase/migrations applied, and the PostgREST-subset server over it. tests/conftest.py imports them so any test
directory can use them; nothing starts unless a test asks for it, and everything stops when the session ends."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from tests.support import postgres, postgrest

JWT_SECRET = "robotrain-test-jwt-secret-with-at-least-32-bytes"
DATABASE = "robotrain"
STORE_TABLES = (
    "events",
    "metrics",
    "idempotency_keys",
    "submit_buckets",
    "artifact_usage",
    "datasets",
    "jobs",
    "api_keys",
)  # children first


@dataclass(frozen=True)
class SupabaseStack:
    cluster: postgres.Cluster
    database: str
    url: str  # SUPABASE_URL
    service_key: str  # SUPABASE_KEY (the service_role key)
    anon_key: str
    subset: postgrest.PostgrestSubset
    admin: psycopg.Connection  # superuser, autocommit; kept open so emptying the tables costs one round trip

    def user_token(self, user_id: str) -> str:
        """A Clerk-style session token as Supabase's third-party auth sees it (role authenticated, sub the user)."""
        return postgrest.mint_jwt(JWT_SECRET, "authenticated", sub=user_id)

    def truncate(self) -> None:
        # DELETE beats TRUNCATE on tables this small (no new files, no exclusive locks)
        self.admin.execute("; ".join(f"delete from public.{table}" for table in STORE_TABLES))


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[postgres.Cluster]:
    with postgres.cluster() as running:
        yield running


@pytest.fixture(scope="session")
def supabase_stack(postgres_cluster: postgres.Cluster) -> Iterator[SupabaseStack]:
    postgres.create_database(postgres_cluster, DATABASE)
    subset = postgrest.PostgrestSubset(postgres_cluster.conninfo(DATABASE, user="authenticator"), JWT_SECRET)
    with postgrest.serve(subset) as server, postgres_cluster.connect(DATABASE, autocommit=True) as admin:
        yield SupabaseStack(
            cluster=postgres_cluster,
            database=DATABASE,
            url=server.url,
            service_key=postgrest.mint_jwt(JWT_SECRET, "service_role"),
            anon_key=postgrest.mint_jwt(JWT_SECRET, "anon"),
            subset=subset,
            admin=admin,
        )


@pytest.fixture
def supabase(supabase_stack: SupabaseStack) -> SupabaseStack:
    """The stack with every store table emptied first."""
    supabase_stack.truncate()
    return supabase_stack
