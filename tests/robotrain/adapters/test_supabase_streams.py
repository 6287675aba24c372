"""SupabaseStreamStore and SupabaseWebhookStore: the shared contracts through the real supabase-py client, the
PostgREST-subset server and real PostgreSQL with the migrations applied."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from httpx_sse import connect_sse

from robotrain.adapters.supabase_store import SupabaseJobStore
from robotrain.adapters.supabase_streams import SupabaseStreamStore
from robotrain.adapters.supabase_webhooks import SupabaseWebhookStore
from robotrain.auth.local_keys import LocalKeys
from robotrain.jobs.lifecycle import apply_transition
from robotrain.jobs.models import JobStatus, MetricPoint
from robotrain.jobs.service import JobService
from robotrain.settings import Settings
from robotrain.wiring import build_components
from tests.robotrain.adapters.stream_contract import StreamStoreContract
from tests.robotrain.adapters.webhook_contract import WebhookStoreContract
from tests.support.app import api_app
from tests.support.components import FakeLauncher, fast_spec
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


def test_an_event_stream_served_from_supabase(live_supabase: SupabaseStack, tmp_path: Path) -> None:
    """The API's event stream over the Supabase stores: status events and metric points through job_feed."""
    settings = Settings(
        data_dir=tmp_path / "data",
        SUPABASE_URL=live_supabase.url,
        SUPABASE_KEY=live_supabase.service_key,
        stream_poll_interval_s=0.05,
    )
    components = build_components(settings, launcher=FakeLauncher())
    store = components.store
    job = JobService(components).submit("alice", fast_spec())
    running = apply_transition(store, store.claim(job.id, max_active=5, max_active_per_user=5), JobStatus.RUNNING)
    store.append_metrics(job.id, [MetricPoint(step=5, name="train/loss", value=0.5)])
    apply_transition(store, running, JobStatus.FAILED, error={"code": "training_error", "message": "boom"})
    headers = {"Authorization": f"Bearer {LocalKeys(settings.data_dir).mint('alice')}"}
    with (
        TestClient(api_app(components)) as client,
        connect_sse(client, "GET", f"/jobs/{job.id}/events", headers=headers) as source,
    ):
        events = [(event.event, event.json()) for event in source.iter_sse() if event.data]
    assert [data["data"]["status"] for kind, data in events if kind == "status"] == ["queued", "running", "failed"]
    assert [data["series"] for kind, data in events if kind == "metrics"] == [{"train/loss": [[5, 0.5]]}]
    assert events[-1] == ("end", {"status": "failed"})
