"""The production WebhookStore on Supabase: tables and functions of supabase/migrations/
20261202130000_live_streams_and_webhooks.sql. Inserting deliveries is an upsert that ignores duplicates (unique per
endpoint and event), so it is retried like a read; leasing is one PATCH filtered on the status and the observed next
attempt time (a compare-and-set, never retried blindly); recording an attempt is one RPC (one transaction). It
reuses the job store adapter's client, retries and error classification by extending it."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from functools import partial
from typing import Any

from postgrest import APIResponse, CountMethod, ReturnMethod

from robotrain.adapters.supabase_store import MAX_ROWS_PER_REQUEST, SupabaseJobStore, _row_to_job, parse_time
from robotrain.jobs.cursor import format_time
from robotrain.jobs.models import JobStatus, utcnow
from robotrain.settings import Settings
from robotrain.webhooks.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    StatusEvent,
    WebhookEndpoint,
    WebhookEventType,
)

_CURSOR = "status_events"


def _optional_time(text: str | None) -> datetime | None:
    return None if text is None else parse_time(text)


def _endpoint(row: dict[str, Any]) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row["id"],
        user_id=row["user_id"],
        url=row["url"],
        events=[WebhookEventType(e) for e in row["events"]],
        secret=row["secret"],
        created_at=parse_time(row["created_at"]),
    )


def _attempt(row: dict[str, Any]) -> DeliveryAttempt:
    return DeliveryAttempt(
        at=parse_time(row["at"]),
        status_code=row["status_code"],
        error=row["error"],
        response_body=row["response_body"],
        duration_ms=row["duration_ms"],
    )


def _delivery(row: dict[str, Any], history: list[DeliveryAttempt] | None = None) -> Delivery:
    return Delivery(
        id=row["id"],
        endpoint_id=row["endpoint_id"],
        event_id=row["event_id"],
        type=WebhookEventType(row["type"]),
        payload=row["payload"],
        status=DeliveryStatus(row["status"]),
        attempts=row["attempts"],
        next_attempt_at=_optional_time(row["next_attempt_at"]),
        retry_until=parse_time(row["retry_until"]),
        created_at=parse_time(row["created_at"]),
        updated_at=parse_time(row["updated_at"]),
        history=history or [],
    )


class SupabaseWebhookStore(SupabaseJobStore):
    @classmethod
    def from_settings(cls, settings: Settings) -> SupabaseWebhookStore:
        store = super().from_settings(settings)
        assert isinstance(store, cls)  # the base builds `cls`
        return store

    # --- endpoints -------------------------------------------------------------------------------------------

    def create_endpoint(self, endpoint: WebhookEndpoint) -> WebhookEndpoint:
        row = {
            "id": endpoint.id,
            "user_id": endpoint.user_id,
            "url": endpoint.url,
            "events": [event.value for event in endpoint.events],
            "secret": endpoint.secret,
            "created_at": format_time(endpoint.created_at),
        }
        rows = self._call_rows(
            "registering a webhook endpoint",
            lambda: self._table("webhook_endpoints").insert(row).execute(),
            idempotent=False,
        )
        return _endpoint(rows[0])

    def get_endpoint(self, endpoint_id: str, *, user_id: str | None = None) -> WebhookEndpoint | None:
        def request() -> APIResponse:
            query = self._table("webhook_endpoints").select("*").eq("id", endpoint_id)
            if user_id is not None:
                query = query.eq("user_id", user_id)
            return query.limit(1).execute()

        rows = self._call_rows("reading a webhook endpoint", request, idempotent=True)
        return _endpoint(rows[0]) if rows else None

    def list_endpoints(self, *, user_id: str) -> list[WebhookEndpoint]:
        rows = self._call_rows(
            "listing webhook endpoints",
            lambda: (
                self._table("webhook_endpoints")
                .select("*")
                .eq("user_id", user_id)
                .order("created_at")
                .order("id")
                .limit(MAX_ROWS_PER_REQUEST)
                .execute()
            ),
            idempotent=True,
        )
        return [_endpoint(row) for row in rows]

    def count_endpoints(self, *, user_id: str) -> int:
        response = self._call(
            "counting webhook endpoints",
            lambda: (
                self._table("webhook_endpoints")
                .select("id", count=CountMethod.exact, head=True)
                .eq("user_id", user_id)
                .execute()
            ),
            idempotent=True,
        )
        return response.count or 0

    def delete_endpoint(self, endpoint_id: str, *, user_id: str) -> bool:
        rows = self._call_rows(
            "deleting a webhook endpoint",
            lambda: self._table("webhook_endpoints").delete().eq("id", endpoint_id).eq("user_id", user_id).execute(),
            idempotent=False,
        )
        return bool(rows)

    def set_secret(self, endpoint_id: str, *, user_id: str, secret: str) -> WebhookEndpoint | None:
        rows = self._call_rows(
            "rotating a webhook secret",
            lambda: (
                self._table("webhook_endpoints")
                .update({"secret": secret})
                .eq("id", endpoint_id)
                .eq("user_id", user_id)
                .execute()
            ),
            idempotent=False,
        )
        return _endpoint(rows[0]) if rows else None

    def endpoints_of(self, user_ids: Collection[str]) -> list[WebhookEndpoint]:
        users = sorted(set(user_ids))
        if not users:
            return []
        rows = self._call_rows(
            "reading webhook endpoints",
            lambda: (
                self._table("webhook_endpoints")
                .select("*")
                .in_("user_id", users)
                .order("id")
                .limit(MAX_ROWS_PER_REQUEST)
                .execute()
            ),
            idempotent=True,
        )
        return [_endpoint(row) for row in rows]

    # --- the relay's input -----------------------------------------------------------------------------------

    def status_events(self, *, after: int, statuses: Collection[JobStatus], limit: int = 500) -> list[StatusEvent]:
        values = sorted({JobStatus(status).value for status in statuses})
        if not values:
            return []
        arguments = {"p_after": after, "p_statuses": values, "p_limit": min(limit, MAX_ROWS_PER_REQUEST)}
        rows = self._call_rows(
            "reading status events",
            lambda: self.client.rpc("webhook_status_events", arguments).execute(),
            idempotent=True,
        )
        return [
            StatusEvent(
                event_id=row["event_id"],
                at=parse_time(row["event_at"]),
                status=row["event_status"],
                job=_row_to_job(row["job"]),
            )
            for row in rows
        ]

    def relay_cursor(self) -> int:
        rows = self._call_rows(
            "reading the webhook relay cursor",
            lambda: self._table("webhook_relay_cursor").select("event_id").eq("name", _CURSOR).limit(1).execute(),
            idempotent=True,
        )
        return int(rows[0]["event_id"]) if rows else 0

    def set_relay_cursor(self, event_id: int) -> None:
        # one relay at a time moves it (Modal's drain runs in one container at most); an upsert is idempotent
        self._call(
            "moving the webhook relay cursor",
            lambda: (
                self._table("webhook_relay_cursor")
                .upsert({"name": _CURSOR, "event_id": event_id}, on_conflict="name", returning=ReturnMethod.minimal)
                .execute()
            ),
            idempotent=True,
        )

    # --- the outbox ------------------------------------------------------------------------------------------

    def add_deliveries(self, deliveries: list[Delivery]) -> int:
        added = 0
        rows = [
            {
                "id": d.id,
                "endpoint_id": d.endpoint_id,
                "event_id": d.event_id,
                "type": d.type.value,
                "payload": d.payload,
                "status": d.status.value,
                "attempts": d.attempts,
                "next_attempt_at": None if d.next_attempt_at is None else format_time(d.next_attempt_at),
                "retry_until": format_time(d.retry_until),
                "created_at": format_time(d.created_at),
                "updated_at": format_time(d.updated_at),
            }
            for d in deliveries
        ]
        for start in range(0, len(rows), MAX_ROWS_PER_REQUEST):
            chunk = rows[start : start + MAX_ROWS_PER_REQUEST]
            inserted = self._call_rows(
                "queueing webhook deliveries", partial(self._insert_deliveries, chunk), idempotent=True
            )
            added += len(inserted)
        return added

    def _insert_deliveries(self, rows: list[dict[str, Any]]) -> APIResponse:
        upsert = self._table("webhook_deliveries").upsert(
            rows, on_conflict="endpoint_id,event_id", ignore_duplicates=True
        )
        return upsert.execute()

    def due_deliveries(self, *, now: datetime, limit: int = 50) -> list[Delivery]:
        rows = self._call_rows(
            "reading due webhook deliveries",
            lambda: (
                self._table("webhook_deliveries")
                .select("*")
                .eq("status", DeliveryStatus.PENDING.value)
                .lte("next_attempt_at", format_time(now))
                .order("next_attempt_at")
                .order("id")
                .limit(limit)
                .execute()
            ),
            idempotent=True,
        )
        return [_delivery(row) for row in rows]

    def lease_delivery(self, delivery_id: str, *, expected_next_at: datetime, until: datetime) -> Delivery | None:
        rows = self._call_rows(
            f"leasing webhook delivery {delivery_id}",
            lambda: (
                self._table("webhook_deliveries")
                .update({"next_attempt_at": format_time(until), "updated_at": format_time(utcnow())})
                .eq("id", delivery_id)
                .eq("status", DeliveryStatus.PENDING.value)
                .eq("next_attempt_at", format_time(expected_next_at))
                .execute()
            ),
            idempotent=False,
        )
        return _delivery(rows[0]) if rows else None

    def record_attempt(
        self,
        delivery_id: str,
        attempt: DeliveryAttempt,
        *,
        status: DeliveryStatus,
        attempts: int,
        next_attempt_at: datetime | None,
    ) -> None:
        arguments = {
            "p_delivery_id": delivery_id,
            "p_at": format_time(attempt.at),
            "p_status_code": attempt.status_code,
            "p_error": attempt.error,
            "p_response_body": attempt.response_body,
            "p_duration_ms": attempt.duration_ms,
            "p_status": status.value,
            "p_attempts": attempts,
            "p_next_attempt_at": None if next_attempt_at is None else format_time(next_attempt_at),
        }
        self._call(
            f"recording an attempt of webhook delivery {delivery_id}",
            lambda: self.client.rpc("webhook_record_attempt", arguments).execute(),
            idempotent=False,
        )

    def get_delivery(self, delivery_id: str, *, endpoint_id: str) -> Delivery | None:
        rows = self._call_rows(
            "reading a webhook delivery",
            lambda: (
                self._table("webhook_deliveries")
                .select("*")
                .eq("id", delivery_id)
                .eq("endpoint_id", endpoint_id)
                .limit(1)
                .execute()
            ),
            idempotent=True,
        )
        if not rows:
            return None
        return _delivery(rows[0], self._history([delivery_id]).get(delivery_id, []))

    def list_deliveries(self, endpoint_id: str, *, limit: int = 50) -> list[Delivery]:
        rows = self._call_rows(
            "listing webhook deliveries",
            lambda: (
                self._table("webhook_deliveries")
                .select("*")
                .eq("endpoint_id", endpoint_id)
                .order("created_at", desc=True)
                .order("id", desc=True)
                .limit(limit)
                .execute()
            ),
            idempotent=True,
        )
        history = self._history([row["id"] for row in rows])
        return [_delivery(row, history.get(row["id"], [])) for row in rows]

    def redeliver(self, delivery_id: str, *, endpoint_id: str, now: datetime, retry_until: datetime) -> Delivery | None:
        rows = self._call_rows(
            f"redelivering webhook delivery {delivery_id}",
            lambda: (
                self._table("webhook_deliveries")
                .update(
                    {
                        "status": DeliveryStatus.PENDING.value,
                        "next_attempt_at": format_time(now),
                        "retry_until": format_time(retry_until),
                        "updated_at": format_time(utcnow()),
                    }
                )
                .eq("id", delivery_id)
                .eq("endpoint_id", endpoint_id)
                .execute()
            ),
            idempotent=False,
        )
        return _delivery(rows[0]) if rows else None

    def _history(self, delivery_ids: list[str]) -> dict[str, list[DeliveryAttempt]]:
        if not delivery_ids:
            return {}
        rows = self._call_rows(
            "reading webhook attempts",
            lambda: (
                self._table("webhook_attempts")
                .select("*")
                .in_("delivery_id", delivery_ids)
                .order("delivery_id")
                .order("id")
                .limit(MAX_ROWS_PER_REQUEST)
                .execute()
            ),
            idempotent=True,
        )
        history: dict[str, list[DeliveryAttempt]] = {}
        for row in rows:
            history.setdefault(row["delivery_id"], []).append(_attempt(row))
        return history
