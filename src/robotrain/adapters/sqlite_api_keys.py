"""The embedded ApiKeyStore: an `api_keys` table in the job store's SQLite file (robotrain.sqlite3), versioned as its
own component. Secrets are never stored, only their sha256 (unique, so a lookup by hash is one index probe)."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

from robotrain.adapters.sqlite_db import BUSY_TIMEOUT_MS, SqliteDatabase
from robotrain.adapters.sqlite_store import parse_time
from robotrain.apikeys.models import ApiKey
from robotrain.errors import StoreUnavailable
from robotrain.jobs.cursor import format_time

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
);
CREATE INDEX IF NOT EXISTS api_keys_user_created ON api_keys (user_id, created_at DESC, id DESC);
"""


def _parse_time(text: str | None) -> datetime | None:
    return None if text is None else parse_time(text)


def _row_to_key(row: sqlite3.Row) -> ApiKey:
    created_at = _parse_time(row["created_at"])
    assert created_at is not None  # NOT NULL
    return ApiKey(
        id=row["id"],
        user_id=row["user_id"],
        name=row["name"],
        key_hash=row["key_hash"],
        created_at=created_at,
        expires_at=_parse_time(row["expires_at"]),
        revoked_at=_parse_time(row["revoked_at"]),
    )


def _time(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)


class SqliteApiKeyStore:
    """ApiKeyStore on the SQLite file the job store uses. Thread- and process-safe like SqliteJobStore."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS):
        self.path = Path(path)
        self._db = SqliteDatabase(
            self.path, unavailable=StoreUnavailable, what="API key store", busy_timeout_ms=busy_timeout_ms
        )
        self._db.create_schema(_SCHEMA, SCHEMA_VERSION, component="apikeys")

    def close(self) -> None:
        self._db.close()

    def create_api_key(self, key: ApiKey) -> ApiKey:
        values = (
            key.id,
            key.user_id,
            key.name,
            key.key_hash,
            format_time(key.created_at),
            _time(key.expires_at),
            _time(key.revoked_at),
        )
        # ids and secrets are random (96 and 256 bits): a duplicate is a bug, and its IntegrityError propagates
        rows = self._db.query(
            "INSERT INTO api_keys (id, user_id, name, key_hash, created_at, expires_at, revoked_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *",
            values,
        )
        return _row_to_key(rows[0])

    def list_api_keys(self, user_id: str) -> list[ApiKey]:
        rows = self._db.query(
            "SELECT * FROM api_keys WHERE user_id = ? AND revoked_at IS NULL ORDER BY created_at DESC, id DESC",
            (user_id,),
        )
        return [_row_to_key(row) for row in rows]

    def find_api_key(self, key_hash: str) -> ApiKey | None:
        rows = self._db.query("SELECT * FROM api_keys WHERE key_hash = ?", (key_hash,))
        return _row_to_key(rows[0]) if rows else None

    def revoke_api_key(self, user_id: str, key_id: str, *, revoked_at: datetime) -> ApiKey | None:
        rows = self._db.query(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL RETURNING *",
            (format_time(revoked_at), key_id, user_id),
        )
        return _row_to_key(rows[0]) if rows else None
