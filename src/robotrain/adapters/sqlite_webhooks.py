"""The embedded WebhookStore: endpoints, the delivery outbox and its attempts, and the relay's cursor, in the job
store's SQLite file (their own component in schema_versions). A delivery is unique per (endpoint, event), so the
relay may derive one twice; leasing a due delivery is one compare-and-set UPDATE."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from datetime import datetime
from pathlib import Path

from robotrain.adapters.sqlite_db import BUSY_TIMEOUT_MS, SqliteDatabase
from robotrain.adapters.sqlite_store import SqliteJobStore, _row_to_job, parse_time
from robotrain.errors import StoreUnavailable
from robotrain.jobs.cursor import format_time
from robotrain.jobs.models import JobStatus, utcnow
from robotrain.webhooks.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    StatusEvent,
    WebhookEndpoint,
    WebhookEventType,
)

SCHEMA_VERSION = 1
COMPONENT = "webhooks"
_CURSOR = "status_events"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_endpoints_user ON webhook_endpoints (user_id, created_at);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id INTEGER NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    retry_until TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at, id);
CREATE TABLE IF NOT EXISTS webhook_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    at TEXT NOT NULL,
    status_code INTEGER,
    error TEXT,
    response_body TEXT NOT NULL,
    duration_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
CREATE TABLE IF NOT EXISTS webhook_relay_cursor (
    name TEXT PRIMARY KEY,
    event_id INTEGER NOT NULL
)
"""


def _optional_time(text: str | None) -> datetime | None:
    return None if text is None else parse_time(text)


def _endpoint(row: sqlite3.Row) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row["id"],
        user_id=row["user_id"],
        url=row["url"],
        events=[WebhookEventType(e) for e in json.loads(row["events"])],
        secret=row["secret"],
        created_at=parse_time(row["created_at"]),
    )


def _delivery(row: sqlite3.Row, history: list[DeliveryAttempt] | None = None) -> Delivery:
    return Delivery(
        id=row["id"],
        endpoint_id=row["endpoint_id"],
        event_id=row["event_id"],
        type=WebhookEventType(row["type"]),
        payload=json.loads(row["payload"]),
        status=DeliveryStatus(row["status"]),
        attempts=row["attempts"],
        next_attempt_at=_optional_time(row["next_attempt_at"]),
        retry_until=parse_time(row["retry_until"]),
        created_at=parse_time(row["created_at"]),
        updated_at=parse_time(row["updated_at"]),
        history=history or [],
    )


def _attempt(row: sqlite3.Row) -> DeliveryAttempt:
    return DeliveryAttempt(
        at=parse_time(row["at"]),
        status_code=row["status_code"],
        error=row["error"],
        response_body=row["response_body"],
        duration_ms=row["duration_ms"],
    )


class SqliteWebhookStore:
    def __init__(self, path: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS):
        self.path = Path(path)
        SqliteJobStore(self.path, busy_timeout_ms=busy_timeout_ms).close()  # status_events joins the job tables
        self._db = SqliteDatabase(
            self.path, unavailable=StoreUnavailable, what="job store", busy_timeout_ms=busy_timeout_ms
        )
        self._db.create_schema(_SCHEMA, SCHEMA_VERSION, component=COMPONENT)

    def close(self) -> None:
        self._db.close()

    # --- endpoints -------------------------------------------------------------------------------------------

    def create_endpoint(self, endpoint: WebhookEndpoint) -> WebhookEndpoint:
        rows = self._db.query(
            "INSERT INTO webhook_endpoints (id, user_id, url, events, secret, created_at) VALUES (?, ?, ?, ?, ?, ?) "
            "RETURNING *",
            (
                endpoint.id,
                endpoint.user_id,
                endpoint.url,
                json.dumps([event.value for event in endpoint.events]),
                endpoint.secret,
                format_time(endpoint.created_at),
            ),
        )
        return _endpoint(rows[0])

    def get_endpoint(self, endpoint_id: str, *, user_id: str | None = None) -> WebhookEndpoint | None:
        sql, params = "SELECT * FROM webhook_endpoints WHERE id = ?", [endpoint_id]
        if user_id is not None:
            sql += " AND user_id = ?"
            params.append(user_id)
        rows = self._db.query(sql, params)
        return _endpoint(rows[0]) if rows else None

    def list_endpoints(self, *, user_id: str) -> list[WebhookEndpoint]:
        rows = self._db.query("SELECT * FROM webhook_endpoints WHERE user_id = ? ORDER BY created_at, id", (user_id,))
        return [_endpoint(row) for row in rows]

    def count_endpoints(self, *, user_id: str) -> int:
        return self._db.query("SELECT count(*) FROM webhook_endpoints WHERE user_id = ?", (user_id,))[0][0]

    def delete_endpoint(self, endpoint_id: str, *, user_id: str) -> bool:
        return (
            self._db.execute("DELETE FROM webhook_endpoints WHERE id = ? AND user_id = ?", (endpoint_id, user_id)) > 0
        )

    def set_secret(self, endpoint_id: str, *, user_id: str, secret: str) -> WebhookEndpoint | None:
        rows = self._db.query(
            "UPDATE webhook_endpoints SET secret = ? WHERE id = ? AND user_id = ? RETURNING *",
            (secret, endpoint_id, user_id),
        )
        return _endpoint(rows[0]) if rows else None

    def endpoints_of(self, user_ids: Collection[str]) -> list[WebhookEndpoint]:
        users = sorted(set(user_ids))
        if not users:
            return []
        rows = self._db.query(
            f"SELECT * FROM webhook_endpoints WHERE user_id IN ({', '.join('?' for _ in users)}) ORDER BY id", users
        )
        return [_endpoint(row) for row in rows]

    # --- the relay's input -----------------------------------------------------------------------------------

    def status_events(self, *, after: int, statuses: Collection[JobStatus], limit: int = 500) -> list[StatusEvent]:
        values = sorted({JobStatus(status).value for status in statuses})
        if not values:
            return []
        rows = self._db.query(
            "SELECT e.id AS event_id, e.at AS event_at, json_extract(e.data, '$.status') AS event_status, j.* "
            "FROM events AS e JOIN jobs AS j ON j.id = e.job_id "
            f"WHERE e.id > ? AND e.kind = 'status' AND json_extract(e.data, '$.status') IN "
            f"({', '.join('?' for _ in values)}) ORDER BY e.id LIMIT ?",
            [after, *values, limit],
        )
        return [
            StatusEvent(
                event_id=row["event_id"],
                at=parse_time(row["event_at"]),
                status=row["event_status"],
                job=_row_to_job(row),
            )
            for row in rows
        ]

    def relay_cursor(self) -> int:
        rows = self._db.query("SELECT event_id FROM webhook_relay_cursor WHERE name = ?", (_CURSOR,))
        return rows[0][0] if rows else 0

    def set_relay_cursor(self, event_id: int) -> None:
        self._db.execute(
            "INSERT INTO webhook_relay_cursor (name, event_id) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET event_id = max(event_id, excluded.event_id)",
            (_CURSOR, event_id),
        )

    # --- the outbox ------------------------------------------------------------------------------------------

    def add_deliveries(self, deliveries: list[Delivery]) -> int:
        if not deliveries:
            return 0
        added = 0
        with self._db.transaction() as conn:
            for d in deliveries:
                added += conn.execute(
                    "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, type, payload, status, attempts, "
                    "next_attempt_at, retry_until, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (endpoint_id, event_id) DO NOTHING",
                    (
                        d.id,
                        d.endpoint_id,
                        d.event_id,
                        d.type.value,
                        json.dumps(d.payload),
                        d.status.value,
                        d.attempts,
                        None if d.next_attempt_at is None else format_time(d.next_attempt_at),
                        format_time(d.retry_until),
                        format_time(d.created_at),
                        format_time(d.updated_at),
                    ),
                ).rowcount
        return added

    def due_deliveries(self, *, now: datetime, limit: int = 50) -> list[Delivery]:
        rows = self._db.query(
            "SELECT * FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at, id LIMIT ?",
            (format_time(now), limit),
        )
        return [_delivery(row) for row in rows]

    def lease_delivery(self, delivery_id: str, *, expected_next_at: datetime, until: datetime) -> Delivery | None:
        rows = self._db.query(
            "UPDATE webhook_deliveries SET next_attempt_at = ?, updated_at = ? "
            "WHERE id = ? AND status = 'pending' AND next_attempt_at = ? RETURNING *",
            (format_time(until), format_time(utcnow()), delivery_id, format_time(expected_next_at)),
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
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO webhook_attempts (delivery_id, at, status_code, error, response_body, duration_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    delivery_id,
                    format_time(attempt.at),
                    attempt.status_code,
                    attempt.error,
                    attempt.response_body,
                    attempt.duration_ms,
                ),
            )
            conn.execute(
                "UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?, updated_at = ? "
                "WHERE id = ?",
                (
                    status.value,
                    attempts,
                    None if next_attempt_at is None else format_time(next_attempt_at),
                    format_time(utcnow()),
                    delivery_id,
                ),
            )

    def get_delivery(self, delivery_id: str, *, endpoint_id: str) -> Delivery | None:
        rows = self._db.query(
            "SELECT * FROM webhook_deliveries WHERE id = ? AND endpoint_id = ?", (delivery_id, endpoint_id)
        )
        if not rows:
            return None
        return _delivery(rows[0], self._history([delivery_id]).get(delivery_id, []))

    def list_deliveries(self, endpoint_id: str, *, limit: int = 50) -> list[Delivery]:
        rows = self._db.query(
            "SELECT * FROM webhook_deliveries WHERE endpoint_id = ? ORDER BY created_at DESC, id DESC LIMIT ?",
            (endpoint_id, limit),
        )
        history = self._history([row["id"] for row in rows])
        return [_delivery(row, history.get(row["id"], [])) for row in rows]

    def redeliver(self, delivery_id: str, *, endpoint_id: str, now: datetime, retry_until: datetime) -> Delivery | None:
        rows = self._db.query(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, retry_until = ?, updated_at = ? "
            "WHERE id = ? AND endpoint_id = ? RETURNING *",
            (format_time(now), format_time(retry_until), format_time(utcnow()), delivery_id, endpoint_id),
        )
        return _delivery(rows[0]) if rows else None

    def _history(self, delivery_ids: list[str]) -> dict[str, list[DeliveryAttempt]]:
        if not delivery_ids:
            return {}
        rows = self._db.query(
            f"SELECT * FROM webhook_attempts WHERE delivery_id IN ({', '.join('?' for _ in delivery_ids)}) "
            "ORDER BY delivery_id, id",
            delivery_ids,
        )
        history: dict[str, list[DeliveryAttempt]] = {}
        for row in rows:
            history.setdefault(row["delivery_id"], []).append(_attempt(row))
        return history
