"""SupabaseDatasetStore: the dataset store contract through the real supabase-py client, the PostgREST-subset server
and real PostgreSQL 15 with the migrations applied."""

from __future__ import annotations

import pytest

from robotrain.adapters.supabase_datasets import SupabaseDatasetStore
from robotrain.adapters.supabase_store import SupabaseJobStore
from tests.robotrain.adapters.dataset_store_contract import DatasetStoreContract
from tests.support.supabase_env import SupabaseStack


class TestSupabaseDatasetStore(DatasetStoreContract):
    @pytest.fixture
    def stores(self, supabase: SupabaseStack):
        jobs = SupabaseJobStore(supabase.url, supabase.service_key, timeout_s=5)
        yield jobs, SupabaseDatasetStore(jobs)
        jobs.close()
