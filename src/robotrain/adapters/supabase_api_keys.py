"""The production ApiKeyStore: the `api_keys` table (supabase/migrations/20261202110000_api_keys.sql) through the
job store's supabase-py client, so both share one connection pool and one classification of errors
(robotrain.adapters.supabase_store). Only the service_role key reaches this table: it has no policy for browsers."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from postgrest import APIResponse

from robotrain.adapters.supabase_store import SupabaseJobStore, parse_time
from robotrain.apikeys.models import ApiKey
from robotrain.jobs.cursor import format_time

# A user holds at most robotrain.apikeys.service.MAX_KEYS_PER_USER unrevoked keys, far below one response's rows.
_LIST_LIMIT = 1000


def _row_to_key(row: dict[str, Any]) -> ApiKey:
    return ApiKey(
        id=row["id"],
        user_id=row["user_id"],
        name=row["name"],
        key_hash=row["key_hash"],
        created_at=parse_time(row["created_at"]),
        expires_at=None if row["expires_at"] is None else parse_time(row["expires_at"]),
        revoked_at=None if row["revoked_at"] is None else parse_time(row["revoked_at"]),
    )


def _rows(response: APIResponse) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], response.data)


class SupabaseApiKeyStore:
    def __init__(self, jobs: SupabaseJobStore):
        self._jobs = jobs

    def _table(self):
        return self._jobs.client.table("api_keys")

    def create_api_key(self, key: ApiKey) -> ApiKey:
        row = {
            "id": key.id,
            "user_id": key.user_id,
            "name": key.name,
            "key_hash": key.key_hash,
            "created_at": format_time(key.created_at),
            "expires_at": None if key.expires_at is None else format_time(key.expires_at),
            "revoked_at": None if key.revoked_at is None else format_time(key.revoked_at),
        }
        response = self._jobs.request(
            "creating an API key", lambda: self._table().insert(row).execute(), idempotent=False
        )
        return _row_to_key(_rows(response)[0])

    def list_api_keys(self, user_id: str) -> list[ApiKey]:
        response = self._jobs.request(
            "listing API keys",
            lambda: (
                self._table()
                .select("*")
                .eq("user_id", user_id)
                .is_("revoked_at", "null")
                .order("created_at", desc=True)
                .order("id", desc=True)
                .limit(_LIST_LIMIT)
                .execute()
            ),
            idempotent=True,
        )
        return [_row_to_key(row) for row in _rows(response)]

    def find_api_key(self, key_hash: str) -> ApiKey | None:
        response = self._jobs.request(
            "checking an API key",
            lambda: self._table().select("*").eq("key_hash", key_hash).limit(1).execute(),
            idempotent=True,
        )
        rows = _rows(response)
        return _row_to_key(rows[0]) if rows else None

    def revoke_api_key(self, user_id: str, key_id: str, *, revoked_at: datetime) -> ApiKey | None:
        # a compare-and-set on "not revoked yet": not retried, like the job store's (a lost answer looks like a loss)
        response = self._jobs.request(
            "revoking an API key",
            lambda: (
                self._table()
                .update({"revoked_at": format_time(revoked_at)})
                .eq("id", key_id)
                .eq("user_id", user_id)
                .is_("revoked_at", "null")
                .execute()
            ),
            idempotent=False,
        )
        rows = _rows(response)
        return _row_to_key(rows[0]) if rows else None
