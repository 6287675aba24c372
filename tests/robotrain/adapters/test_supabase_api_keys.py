"""SupabaseApiKeyStore: the ApiKeyStore contract through the real supabase-py client, the PostgREST-subset server
and real PostgreSQL with the migrations; then what the migration promises about who may read the table."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from robotrain.adapters.supabase_api_keys import SupabaseApiKeyStore
from robotrain.adapters.supabase_store import SupabaseJobStore
from tests.robotrain.adapters.api_key_store_contract import ApiKeyStoreContract, make_key
from tests.support.supabase_env import SupabaseStack


@pytest.fixture
def jobs(supabase: SupabaseStack) -> Iterator[SupabaseJobStore]:
    store = SupabaseJobStore(supabase.url, supabase.service_key, timeout_s=5)
    yield store
    store.close()


class TestSupabaseApiKeyStore(ApiKeyStoreContract):
    @pytest.fixture
    def api_key_store(self, jobs: SupabaseJobStore) -> SupabaseApiKeyStore:
        return SupabaseApiKeyStore(jobs)


def test_browsers_can_read_no_key_row_not_even_their_own_hashes(supabase: SupabaseStack, jobs) -> None:
    SupabaseApiKeyStore(jobs).create_api_key(make_key("user_alice"))
    privileges = supabase.admin.execute(
        "select r, has_table_privilege(r, 'public.api_keys', 'select') from unnest(array['anon', 'authenticated']) r"
    ).fetchall()
    rls = supabase.admin.execute("select relrowsecurity from pg_class where oid = 'public.api_keys'::regclass")
    assert dict(privileges) == {"anon": False, "authenticated": False}
    assert rls.fetchone() == (True,)
