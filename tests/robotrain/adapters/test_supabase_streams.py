"""SupabaseStreamStore and SupabaseWebhookStore: the shared contracts through the real supabase-py client, the
PostgREST-subset server and real PostgreSQL with the migrations applied."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from robotrain.adapters.supabase_store import SupabaseJobStore
from robotrain.adapters.supabase_streams import SupabaseStreamStore
from robotrain.adapters.supabase_webhooks import SupabaseWebhookStore
from tests.robotrain.adapters.stream_contract import StreamStoreContract
from tests.robotrain.adapters.webhook_contract import WebhookStoreContract
from tests.support.supabase_env import SupabaseStack

WEBHOOK_TABLES = ("webhook_attempts", "webhook_deliveries", "webhook_endpoints", "webhook_relay_cursor")


@pytest.fixture
def live_supabase(supabase: SupabaseStack) -> SupabaseStack:
    supabase.admin.execute("; ".join(f"delete from public.{table}" for table in WEBHOOK_TABLES))
    return supabase


class TestSupabaseStreamStore(StreamStoreContract):
    @pytest.fixture
    def stores(self, live_supabase: SupabaseStack) -> Iterator[tuple[SupabaseJobStore, SupabaseStreamStore]]:
        http = httpx.Client(timeout=5)
        jobs = SupabaseJobStore(live_supabase.url, live_supabase.service_key, http_client=http)
        streams = SupabaseStreamStore(live_supabase.url, live_supabase.service_key, http_client=http)
        yield jobs, streams
        http.close()


class TestSupabaseWebhookStore(WebhookStoreContract):
    @pytest.fixture
    def stores(self, live_supabase: SupabaseStack) -> Iterator[tuple[SupabaseJobStore, SupabaseWebhookStore]]:
        http = httpx.Client(timeout=5)
        jobs = SupabaseJobStore(live_supabase.url, live_supabase.service_key, http_client=http)
        hooks = SupabaseWebhookStore(live_supabase.url, live_supabase.service_key, http_client=http)
        yield jobs, hooks
        http.close()


def test_a_browser_token_cannot_read_webhook_secrets_or_call_the_feed(live_supabase: SupabaseStack) -> None:
    """Row-level security: webhook tables and the feed function are for the backend's key only."""
    headers = {"apikey": live_supabase.anon_key, "Authorization": f"Bearer {live_supabase.user_token('alice')}"}
    with httpx.Client(base_url=live_supabase.url, headers=headers, timeout=5) as http:
        assert http.get("/rest/v1/webhook_endpoints?select=*").status_code in (401, 403)
        feed = http.post(
            "/rest/v1/rpc/job_feed",
            json={"p_job_id": "x", "p_user_id": "alice", "p_after_event": 0, "p_after_metric": 0, "p_limit": 1},
        )
        assert feed.status_code in (401, 403)
