"""The production DatasetStore: the `datasets` and `artifact_usage` tables of supabase/migrations, through the job
store's supabase-py client and its one error classification (SupabaseJobStore's TRANSIENT_ERRORS and call path:
reads and upserts retried, other writes not).

The checks that need the jobs table are functions in the migration, called as RPCs: `dataset_in_use`,
`delete_dataset` (the in-use check and the delete in one transaction) and `user_storage_bytes`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from postgrest import APIResponse, ReturnMethod

from robotrain.adapters.supabase_store import StoreError, SupabaseJobStore
from robotrain.datasets.errors import DatasetInUse
from robotrain.datasets.models import Dataset, DatasetPage
from robotrain.errors import InvalidRequest
from robotrain.jobs.cursor import decode_cursor, encode_cursor, format_time
from robotrain.jobs.models import utcnow

MAX_PAGE = 999  # PostgREST on Supabase answers at most 1000 rows; a page asks for one more than it shows


def _row_to_dataset(row: dict[str, Any]) -> Dataset:
    return Dataset.model_validate({**row, "created_at": datetime.fromisoformat(row["created_at"]).astimezone(UTC)})


class SupabaseDatasetStore:
    def __init__(self, jobs: SupabaseJobStore):
        self._jobs = jobs

    def _table(self, name: str):
        return self._jobs.client.table(name)

    def _rows(self, doing: str, request: Any, *, idempotent: bool = True) -> list[dict[str, Any]]:
        return self._jobs._call_rows(doing, request, idempotent=idempotent)

    def _rpc(self, doing: str, function: str, arguments: dict[str, Any], *, idempotent: bool) -> Any:
        response: APIResponse = self._jobs._call(
            doing, lambda: self._jobs.client.rpc(function, arguments).execute(), idempotent=idempotent
        )
        return response.data

    def create(self, dataset: Dataset) -> Dataset:
        row = dataset.model_dump(mode="json") | {"created_at": format_time(dataset.created_at)}
        rows = self._rows(
            f"creating dataset {dataset.id}", lambda: self._table("datasets").insert(row).execute(), idempotent=False
        )
        return _row_to_dataset(rows[0])

    def get(self, dataset_id: str, *, user_id: str) -> Dataset | None:
        rows = self._rows(
            f"reading dataset {dataset_id}",
            lambda: self._table("datasets").select("*").eq("id", dataset_id).eq("user_id", user_id).limit(1).execute(),
        )
        return _row_to_dataset(rows[0]) if rows else None

    def list_datasets(self, *, user_id: str, limit: int = 20, cursor: str | None = None) -> DatasetPage:
        if limit < 1:
            raise InvalidRequest("limit must be at least 1")
        limit = min(limit, MAX_PAGE)

        def base():
            return self._table("datasets").select("*").eq("user_id", user_id)

        if cursor is None:
            rows = self._rows(
                "listing datasets",
                lambda: base().order("created_at", desc=True).order("id", desc=True).limit(limit + 1).execute(),
            )
        else:
            after_created, after_id = decode_cursor(cursor)
            after = format_time(after_created)
            # (created_at, id) < (after, after_id) without `or=`: the rest of the same instant, then older ones
            rows = self._rows(
                "listing datasets",
                lambda: (
                    base().eq("created_at", after).lt("id", after_id).order("id", desc=True).limit(limit + 1).execute()
                ),
            )
            if len(rows) <= limit:
                rows += self._rows(
                    "listing datasets",
                    lambda: (
                        base()
                        .lt("created_at", after)
                        .order("created_at", desc=True)
                        .order("id", desc=True)
                        .limit(limit + 1 - len(rows))
                        .execute()
                    ),
                )
        page = [_row_to_dataset(row) for row in rows[:limit]]
        more = len(rows) > limit
        return DatasetPage(data=page, next_cursor=encode_cursor(page[-1].created_at, page[-1].id) if more else None)

    def in_use(self, dataset_id: str, *, user_id: str) -> bool:
        arguments = {"p_dataset_id": dataset_id, "p_user_id": user_id}
        return bool(self._rpc(f"checking dataset {dataset_id}", "dataset_in_use", arguments, idempotent=True))

    def delete(self, dataset_id: str, *, user_id: str) -> bool:
        arguments = {"p_dataset_id": dataset_id, "p_user_id": user_id}
        outcome = self._rpc(f"deleting dataset {dataset_id}", "delete_dataset", arguments, idempotent=False)
        if outcome == "in_use":
            raise DatasetInUse(dataset_id)
        if outcome not in ("deleted", "missing"):
            raise StoreError(f"delete_dataset answered {outcome!r}")
        return outcome == "deleted"

    def record_artifact_bytes(self, job_id: str, *, user_id: str, size: int) -> None:
        row = {"job_id": job_id, "user_id": user_id, "bytes": size, "updated_at": format_time(utcnow())}
        self._jobs._call(
            f"recording the artifacts of job {job_id}",
            lambda: (
                self._table("artifact_usage")
                .upsert(row, on_conflict="job_id", returning=ReturnMethod.minimal)
                .execute()
            ),
            idempotent=True,
            job_id=job_id,
        )

    def usage_bytes(self, user_id: str) -> int:
        value = self._rpc("reading storage use", "user_storage_bytes", {"p_user_id": user_id}, idempotent=True)
        return int(value or 0)
