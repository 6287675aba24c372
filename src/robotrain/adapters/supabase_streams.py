"""The production StreamStore: live-stream reads on Supabase. `job_feed` is one RPC (supabase/migrations/
20261202130000_live_streams_and_webhooks.sql) that returns the job, its events after an id and its metric points
after a seq in one round trip; `jobs_changed` is one filtered select. It reuses the job store adapter's client,
retries and error classification (TRANSIENT_ERRORS) by extending it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from robotrain.adapters.supabase_store import SupabaseJobStore, _row_to_event, _row_to_job
from robotrain.jobs.cursor import format_time
from robotrain.jobs.models import Job
from robotrain.settings import Settings
from robotrain.streams.models import JobFeed, MetricChange


class SupabaseStreamStore(SupabaseJobStore):
    @classmethod
    def from_settings(cls, settings: Settings) -> SupabaseStreamStore:
        store = super().from_settings(settings)
        assert isinstance(store, cls)  # the base builds `cls`
        return store

    def job_feed(
        self, job_id: str, *, user_id: str, after_event: int = 0, after_metric: int = 0, limit: int = 500
    ) -> JobFeed | None:
        arguments = {
            "p_job_id": job_id,
            "p_user_id": user_id,
            "p_after_event": after_event,
            "p_after_metric": after_metric,
            "p_limit": limit,
        }
        response = self._call(
            f"reading the live feed of job {job_id}",
            lambda: self.client.rpc("job_feed", arguments).execute(),
            idempotent=True,
        )
        feed = cast(dict[str, Any] | None, response.data)
        if not feed:
            return None
        return JobFeed(
            job=_row_to_job(feed["job"]),
            events=[_row_to_event(row) for row in feed["events"]],
            metrics=[
                MetricChange(seq=row["seq"], name=row["name"], step=row["step"], value=float(row["value"]))
                for row in feed["metrics"]
            ],
        )

    def jobs_changed(self, *, user_id: str, since: datetime, limit: int = 200) -> list[Job]:
        rows = self._call_rows(
            "reading changed jobs",
            lambda: (
                self._table("jobs")
                .select("*")
                .eq("user_id", user_id)
                .gte("updated_at", format_time(since))
                .order("updated_at")
                .order("id")
                .limit(limit)
                .execute()
            ),
            idempotent=True,
        )
        return [_row_to_job(row) for row in rows]
