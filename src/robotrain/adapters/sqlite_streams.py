"""The embedded StreamStore: live-stream reads on the job store's SQLite file.

Metric points have no id of their own (their key is (job, name, step), and a resumed attempt overwrites a step), so
this component adds a change log beside them: triggers on `metrics` append (job, name, step) to `metric_changes`,
whose AUTOINCREMENT `seq` is the stream's cursor. The triggers live in the database, so worker processes that only
know the job store feed it too. Created by its own component version in the shared file (schema_versions)."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

from robotrain.adapters.sqlite_db import BUSY_TIMEOUT_MS, SqliteDatabase
from robotrain.adapters.sqlite_store import SqliteJobStore, _row_to_job
from robotrain.errors import StoreUnavailable
from robotrain.jobs.cursor import format_time
from robotrain.jobs.models import Job
from robotrain.streams.models import JobFeed, MetricChange

SCHEMA_VERSION = 1
COMPONENT = "streams"

_TABLES = """
CREATE TABLE IF NOT EXISTS metric_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    name TEXT NOT NULL,
    step INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS metric_changes_job_seq ON metric_changes (job_id, seq);
CREATE INDEX IF NOT EXISTS jobs_user_updated ON jobs (user_id, updated_at, id)
"""
# Run whole (a trigger body has its own ';'); an upsert that replaces a value fires the update trigger.
_TRIGGERS = (
    "CREATE TRIGGER IF NOT EXISTS metrics_log_insert AFTER INSERT ON metrics BEGIN "
    "INSERT INTO metric_changes (job_id, name, step) VALUES (new.job_id, new.name, new.step); END",
    "CREATE TRIGGER IF NOT EXISTS metrics_log_update AFTER UPDATE OF value ON metrics BEGIN "
    "INSERT INTO metric_changes (job_id, name, step) VALUES (new.job_id, new.name, new.step); END",
)


class SqliteStreamStore:
    def __init__(self, path: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS):
        self.path = Path(path)
        # the job store's tables must exist before triggers can be put on them
        SqliteJobStore(self.path, busy_timeout_ms=busy_timeout_ms).close()
        self._db = SqliteDatabase(
            self.path, unavailable=StoreUnavailable, what="job store", busy_timeout_ms=busy_timeout_ms
        )
        new = not self._db.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'metric_changes'")
        self._db.create_schema(_TABLES, SCHEMA_VERSION, component=COMPONENT)
        with self._db.transaction() as conn:
            for trigger in _TRIGGERS:
                conn.execute(trigger)
            if new:  # points written before this component existed join the log once, in key order
                conn.execute(
                    "INSERT INTO metric_changes (job_id, name, step) SELECT job_id, name, step FROM metrics "
                    "ORDER BY job_id, step, name"
                )

    def close(self) -> None:
        self._db.close()

    def job_feed(
        self, job_id: str, *, user_id: str, after_event: int = 0, after_metric: int = 0, limit: int = 500
    ) -> JobFeed | None:
        # The job first, then what was written: any event or point written before the job's status read is seen.
        rows = self._db.query("SELECT * FROM jobs WHERE id = ? AND user_id = ?", (job_id, user_id))
        if not rows:
            return None
        job = _row_to_job(rows[0])
        event_rows = self._db.query(
            "SELECT * FROM events WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?", (job_id, after_event, limit)
        )
        metric_rows = self._db.query(
            "SELECT c.seq, c.name, c.step, m.value FROM metric_changes AS c "
            "JOIN metrics AS m ON m.job_id = c.job_id AND m.name = c.name AND m.step = c.step "
            "WHERE c.job_id = ? AND c.seq > ? ORDER BY c.seq LIMIT ?",
            (job_id, after_metric, limit),
        )
        return JobFeed(
            job=job,
            events=[SqliteJobStore._row_to_event(row) for row in event_rows],
            metrics=[
                MetricChange(
                    seq=row["seq"],
                    name=row["name"],
                    step=row["step"],
                    value=math.nan if row["value"] is None else float(row["value"]),
                )
                for row in metric_rows
            ],
        )

    def jobs_changed(self, *, user_id: str, since: datetime, limit: int = 200) -> list[Job]:
        rows = self._db.query(
            "SELECT * FROM jobs WHERE user_id = ? AND updated_at >= ? ORDER BY updated_at, id LIMIT ?",
            (user_id, format_time(since), limit),
        )
        return [_row_to_job(row) for row in rows]
