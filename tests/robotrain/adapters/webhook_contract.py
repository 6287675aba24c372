"""The behaviour every WebhookStore adapter must show, as a reusable pytest class. A subclass provides `stores`: an
empty JobStore (status events come from it) and the WebhookStore over the same data."""

from __future__ import annotations

from datetime import timedelta

import pytest

from robotrain.jobs.models import EventKind, JobStatus, utcnow
from robotrain.ports import JobStore, WebhookStore
from robotrain.webhooks.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    WebhookEndpoint,
    WebhookEventType,
    new_delivery_id,
    new_endpoint_id,
    new_secret,
)
from tests.robotrain.adapters.store_contract import make_job


def endpoint(user_id: str = "alice", events: list[WebhookEventType] | None = None) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=new_endpoint_id(),
        user_id=user_id,
        url="https://hooks.example.com/robotrain",
        events=events or list(WebhookEventType),
        secret=new_secret(),
        created_at=utcnow(),
    )


def delivery(endpoint_id: str, event_id: int, **fields) -> Delivery:
    now = utcnow()
    values = {
        "id": new_delivery_id(),
        "endpoint_id": endpoint_id,
        "event_id": event_id,
        "type": WebhookEventType.JOB_SUCCEEDED,
        "payload": {"type": "job.succeeded", "data": {"id": "job_x", "loss": 0.5}},
        "next_attempt_at": now,
        "retry_until": now + timedelta(days=1),
        "created_at": now,
        "updated_at": now,
        **fields,
    }
    return Delivery(**values)


class WebhookStoreContract:
    @pytest.fixture
    def stores(self) -> tuple[JobStore, WebhookStore]:
        raise NotImplementedError

    def test_endpoints_belong_to_their_user(self, stores) -> None:
        _, hooks = stores
        mine = hooks.create_endpoint(endpoint("alice", [WebhookEventType.JOB_FAILED]))
        theirs = hooks.create_endpoint(endpoint("bob"))
        assert mine.events == [WebhookEventType.JOB_FAILED]
        assert [e.id for e in hooks.list_endpoints(user_id="alice")] == [mine.id]
        assert hooks.count_endpoints(user_id="alice") == 1
        assert hooks.get_endpoint(mine.id, user_id="bob") is None
        assert hooks.get_endpoint(mine.id) == mine
        assert {e.id for e in hooks.endpoints_of({"alice", "bob"})} == {mine.id, theirs.id}
        assert hooks.set_secret(mine.id, user_id="bob", secret=new_secret()) is None
        rotated = hooks.set_secret(mine.id, user_id="alice", secret="whsec_bmV3")
        assert rotated is not None and rotated.secret == "whsec_bmV3"
        assert not hooks.delete_endpoint(mine.id, user_id="bob")
        assert hooks.delete_endpoint(mine.id, user_id="alice")
        assert hooks.get_endpoint(mine.id) is None

    def test_status_events_come_with_their_job_and_the_cursor_persists(self, stores) -> None:
        jobs, hooks = stores
        job = jobs.create(make_job("alice"))
        jobs.append_event(job.id, EventKind.STATUS, "queued", {"status": "queued"})
        jobs.append_event(job.id, EventKind.LOG, "a log line", {"status": "running"})
        running = jobs.append_event(job.id, EventKind.STATUS, "running", {"status": "running"})
        events = hooks.status_events(after=0, statuses={JobStatus.RUNNING, JobStatus.SUCCEEDED})
        assert [(e.event_id, e.status, e.job.id, e.job.user_id) for e in events] == [
            (running.id, "running", job.id, "alice")
        ]
        assert hooks.status_events(after=running.id, statuses={JobStatus.RUNNING}) == []
        assert hooks.relay_cursor() == 0
        hooks.set_relay_cursor(running.id)
        hooks.set_relay_cursor(running.id)
        assert hooks.relay_cursor() == running.id

    def test_a_delivery_is_unique_per_endpoint_and_event(self, stores) -> None:
        _, hooks = stores
        target = hooks.create_endpoint(endpoint())
        assert hooks.add_deliveries([delivery(target.id, 7), delivery(target.id, 8)]) == 2
        assert hooks.add_deliveries([delivery(target.id, 7), delivery(target.id, 9)]) == 1
        assert sorted(d.event_id for d in hooks.list_deliveries(target.id)) == [7, 8, 9]

    def test_due_deliveries_are_leased_once_and_attempts_are_recorded(self, stores) -> None:
        _, hooks = stores
        target = hooks.create_endpoint(endpoint())
        now = utcnow()
        hooks.add_deliveries([delivery(target.id, 1, next_attempt_at=now - timedelta(seconds=1))])
        hooks.add_deliveries([delivery(target.id, 2, next_attempt_at=now + timedelta(hours=1))])
        due = hooks.due_deliveries(now=now)
        assert [d.event_id for d in due] == [1]
        lease_until = now + timedelta(seconds=40)
        leased = hooks.lease_delivery(due[0].id, expected_next_at=due[0].next_attempt_at, until=lease_until)
        assert leased is not None and leased.payload == due[0].payload
        # a second relay that read the same row loses the compare-and-set
        assert hooks.lease_delivery(due[0].id, expected_next_at=due[0].next_attempt_at, until=lease_until) is None
        assert hooks.due_deliveries(now=now) == []

        failed = DeliveryAttempt(at=now, status_code=500, error="HTTP 500", response_body="boom", duration_ms=12)
        retry_at = now + timedelta(seconds=5)
        hooks.record_attempt(due[0].id, failed, status=DeliveryStatus.PENDING, attempts=1, next_attempt_at=retry_at)
        ok = DeliveryAttempt(at=retry_at, status_code=204, duration_ms=3)
        hooks.record_attempt(due[0].id, ok, status=DeliveryStatus.SUCCEEDED, attempts=2, next_attempt_at=None)
        stored = hooks.get_delivery(due[0].id, endpoint_id=target.id)
        assert stored is not None and stored.status is DeliveryStatus.SUCCEEDED and stored.attempts == 2
        assert [(a.status_code, a.error, a.response_body) for a in stored.history] == [
            (500, "HTTP 500", "boom"),
            (204, None, ""),
        ]
        assert hooks.get_delivery(due[0].id, endpoint_id="whe_other") is None

        again = hooks.redeliver(due[0].id, endpoint_id=target.id, now=now, retry_until=now + timedelta(days=1))
        assert again is not None and again.status is DeliveryStatus.PENDING
        assert [d.id for d in hooks.due_deliveries(now=now)] == [due[0].id]

    def test_deleting_an_endpoint_deletes_its_deliveries(self, stores) -> None:
        _, hooks = stores
        target = hooks.create_endpoint(endpoint())
        hooks.add_deliveries([delivery(target.id, 1)])
        hooks.delete_endpoint(target.id, user_id="alice")
        assert hooks.list_deliveries(target.id) == []
        assert hooks.due_deliveries(now=utcnow() + timedelta(days=2)) == []
