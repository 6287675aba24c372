"""The embedded JobStore: one SQLite file (robotrain.adapters.sqlite_db) shared by the API server (many threads),
the control plane and worker subprocesses. Every status change is a single
`UPDATE ... WHERE id = ? AND status IN (...) RETURNING *`, so two processes racing for one job cannot both win. Timestamps are stored as ISO-8601 UTC text with microseconds and a fixed width,
so text order is time order.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from robotrain.adapters.sqlite_db import BUSY_TIMEOUT_MS, SqliteDatabase
from robotrain.errors import InvalidRequest, JobConflict, JobNotFound, StoreUnavailable
from robotrain.jobs.claims import Capped, CapScope, ClaimBatch, Claimed, ClaimOutcome, LaunchRecord, Missing, NotQueued
from robotrain.jobs.cursor import decode_cursor, encode_cursor, format_time
from robotrain.jobs.models import (
    Job,
    JobChanges,
    JobError,
    JobEvent,
    JobStatus,
    MetricPoint,
    NewEvent,
    Page,
    Progress,
    utcnow,
)
from robotrain.jobs.submission import (
    Created,
    KeyReused,
    OverActiveCap,
    OverStorage,
    Replayed,
    SubmitOutcome,
    SubmitRateLimited,
    SubmitRequest,
    refilled_tokens,
    seconds_until_a_token,
)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'starting', 'running', 'succeeded', 'failed', 'cancelled')),
    spec TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    retry_of TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    progress TEXT NOT NULL,
    result TEXT,
    error TEXT,
    launch_handle TEXT,
    heartbeat_at TEXT,
    enqueued_at TEXT
);
CREATE INDEX IF NOT EXISTS jobs_user_created ON jobs (user_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_user_status_created ON jobs (user_id, status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_status_created ON jobs (status, created_at, id);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_job_id ON events (job_id, id);
CREATE TABLE IF NOT EXISTS metrics (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    step INTEGER NOT NULL,
    value REAL,
    PRIMARY KEY (job_id, name, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency_keys (
    user_id TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    job_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_created ON idempotency_keys (created_at);
CREATE TABLE IF NOT EXISTS submit_buckets (
    user_id TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    refilled_at TEXT NOT NULL
);
"""

_JOB_COLUMNS = (
    "id, user_id, name, status, spec, attempt, retry_of, created_at, updated_at, started_at, finished_at, "
    "progress, result, error, launch_handle, heartbeat_at, enqueued_at"
)
_JSON_FIELDS = frozenset({"progress", "result", "error"})
_TIME_FIELDS = frozenset({"started_at", "finished_at", "heartbeat_at", "enqueued_at"})


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _optional_time(text: str | None) -> datetime | None:
    return None if text is None else parse_time(text)


def _row_to_job(row: sqlite3.Row) -> Job:
    error = json.loads(row["error"]) if row["error"] is not None else None
    return Job(
        id=row["id"],
        user_id=row["user_id"],
        name=row["name"],
        status=JobStatus(row["status"]),
        spec=json.loads(row["spec"]),
        attempt=row["attempt"],
        retry_of=row["retry_of"],
        created_at=parse_time(row["created_at"]),
        updated_at=parse_time(row["updated_at"]),
        started_at=_optional_time(row["started_at"]),
        finished_at=_optional_time(row["finished_at"]),
        progress=Progress.model_validate(json.loads(row["progress"])),
        result=json.loads(row["result"]) if row["result"] is not None else None,
        error=JobError.model_validate(error) if error is not None else None,
        launch_handle=row["launch_handle"],
        heartbeat_at=_optional_time(row["heartbeat_at"]),
        enqueued_at=_optional_time(row["enqueued_at"]),
    )


def _json_safe(value: Any) -> Any:
    """Non-finite floats (a diverged loss) as the strings "NaN", "Infinity", "-Infinity", which pydantic reads back as
    floats; the same encoding the Supabase store sends. (model_dump_json would write null, which a float field then
    refuses, and json.dumps would write bare NaN, which is not JSON.)"""
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def _json_text(value: Any) -> str:
    return json.dumps(_json_safe(value), allow_nan=False)


def _column_value(field: str, value: Any) -> Any:
    """A JobChanges / Job field as the value its column stores."""
    if field in _TIME_FIELDS or field in ("created_at", "updated_at"):
        return None if value is None else format_time(value)
    if field == "progress":
        # progress is never null on a Job: an explicit None resets it
        return _json_text((value or Progress()).model_dump(mode="python"))
    if field == "error":
        return None if value is None else value.model_dump_json()
    if field in ("result", "spec"):
        return None if value is None else _json_text(value)
    if field == "status":
        return JobStatus(value).value
    return value


_INSERT_JOB = (
    f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({', '.join('?' for _ in _JOB_COLUMNS.split(', '))}) RETURNING *"
)


def _job_values(job: Job) -> list[Any]:
    return [_column_value(field, getattr(job, field)) for field in _JOB_COLUMNS.split(", ")]


def _insert_event(conn: sqlite3.Connection, job_id: str, event: NewEvent, at: str) -> None:
    conn.execute(
        "INSERT INTO events (job_id, at, kind, message, data) VALUES (?, ?, ?, ?, ?)",
        (job_id, at, event.kind, event.message, json.dumps(event.data)),
    )


def _series(rows: list[sqlite3.Row]) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        # SQLite stores NaN as NULL; a diverged loss is still worth showing as NaN
        value = math.nan if row["value"] is None else float(row["value"])
        series.setdefault(row["name"], []).append((row["step"], value))
    return series


class SqliteJobStore:
    """JobStore on a SQLite file. Thread-safe (one connection per thread) and process-safe (WAL + busy_timeout +
    single-statement compare-and-set). Create it once per process; each thread lazily opens its own connection."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS):
        self.path = Path(path)
        self._db = SqliteDatabase(
            self.path, unavailable=StoreUnavailable, what="job store", busy_timeout_ms=busy_timeout_ms
        )
        self._db.create_schema(_SCHEMA, SCHEMA_VERSION, component="jobs")

    def close(self) -> None:
        self._db.close()

    # --- jobs ------------------------------------------------------------------------------------------------

    def create(self, job: Job) -> Job:
        try:
            rows = self._db.query(_INSERT_JOB, _job_values(job))
        except sqlite3.IntegrityError as error:
            raise JobConflict(f"a job with id {job.id!r} already exists") from error
        return _row_to_job(rows[0])

    def submit(self, request: SubmitRequest) -> SubmitOutcome:
        # One BEGIN IMMEDIATE transaction: SQLite's single write lock serialises it with every other writer, so the
        # checks and the writes cannot interleave with another submit (robotrain.jobs.submission has the order).
        job, user_id, rate = request.job, request.job.user_id, request.rate_per_minute
        with self._db.transaction() as conn:
            existing = conn.execute("SELECT * FROM jobs WHERE id = ?", (job.id,)).fetchone()
            if existing is not None and existing["user_id"] == user_id:
                return Created(_row_to_job(existing))
            if request.idempotency_key is not None:
                stored = conn.execute(
                    "SELECT k.request_hash AS stored_hash, j.* FROM idempotency_keys AS k "
                    "LEFT JOIN jobs AS j ON j.id = k.job_id WHERE k.user_id = ? AND k.key = ?",
                    (user_id, request.idempotency_key),
                ).fetchone()
                if stored is not None:
                    if stored["stored_hash"] != request.request_hash:
                        return KeyReused()
                    if stored["id"] is not None:
                        return Replayed(_row_to_job(stored))
                    # the key's job is gone (deleted by hand): the key is taken over below
            bucket = conn.execute(
                "SELECT tokens, refilled_at FROM submit_buckets WHERE user_id = ?", (user_id,)
            ).fetchone()
            refilled_at = request.now
            tokens = float(rate)
            if bucket is not None:
                last = parse_time(bucket["refilled_at"])
                tokens = refilled_tokens(bucket["tokens"], last, request.now, rate)
                refilled_at = max(last, request.now)
            if tokens < 1.0:
                return SubmitRateLimited(seconds_until_a_token(tokens, rate))
            statuses = sorted({JobStatus(status).value for status in request.unfinished_statuses})
            unfinished = conn.execute(
                f"SELECT count(*) FROM jobs WHERE user_id = ? AND status IN ({', '.join('?' for _ in statuses)})",
                (user_id, *statuses),
            ).fetchone()[0]
            if unfinished >= request.max_unfinished:
                return OverActiveCap(unfinished)
            if request.storage_needed_bytes is not None and request.storage_quota_bytes is not None:
                # the datasets domain's tables, in the same file (robotrain.adapters.sqlite_datasets; wiring opens both)
                used = conn.execute(
                    "SELECT (SELECT coalesce(sum(bytes), 0) FROM datasets WHERE user_id = ?) "
                    "+ (SELECT coalesce(sum(bytes), 0) FROM artifact_usage WHERE user_id = ?)",
                    (user_id, user_id),
                ).fetchone()[0]
                if used + request.storage_needed_bytes > request.storage_quota_bytes:
                    return OverStorage(int(used))
            try:
                created = _row_to_job(conn.execute(_INSERT_JOB, _job_values(job)).fetchone())
            except sqlite3.IntegrityError as error:
                raise JobConflict(f"a job with id {job.id!r} already exists") from error
            _insert_event(conn, created.id, request.event, format_time(request.now))
            if request.idempotency_key is not None:
                conn.execute(
                    "INSERT INTO idempotency_keys (user_id, key, request_hash, job_id, created_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, key) DO UPDATE SET "
                    "request_hash = excluded.request_hash, job_id = excluded.job_id, created_at = excluded.created_at",
                    (user_id, request.idempotency_key, request.request_hash, created.id, format_time(request.now)),
                )
            conn.execute(
                "INSERT INTO submit_buckets (user_id, tokens, refilled_at) VALUES (?, ?, ?) ON CONFLICT (user_id) "
                "DO UPDATE SET tokens = excluded.tokens, refilled_at = excluded.refilled_at",
                (user_id, tokens - 1.0, format_time(refilled_at)),
            )
        return Created(created)

    def get(self, job_id: str, *, user_id: str | None = None) -> Job | None:
        if user_id is None:
            rows = self._db.query("SELECT * FROM jobs WHERE id = ?", (job_id,))
        else:
            rows = self._db.query("SELECT * FROM jobs WHERE id = ? AND user_id = ?", (job_id, user_id))
        return _row_to_job(rows[0]) if rows else None

    def list_jobs(
        self, *, user_id: str, status: JobStatus | None = None, limit: int = 20, cursor: str | None = None
    ) -> Page:
        if limit < 1:
            raise InvalidRequest("limit must be at least 1")
        where = ["user_id = ?"]
        params: list[Any] = [user_id]
        if status is not None:
            where.append("status = ?")
            params.append(JobStatus(status).value)
        if cursor is not None:
            after_time, after_id = decode_cursor(cursor)
            after_created = format_time(after_time)
            # row-value comparison: strictly older than the last row of the previous page
            where.append("(created_at, id) < (?, ?)")
            params += [after_created, after_id]
        rows = self._db.query(
            f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT ?",
            [*params, limit + 1],
        )
        page, more = rows[:limit], len(rows) > limit
        next_cursor = encode_cursor(parse_time(page[-1]["created_at"]), page[-1]["id"]) if more else None
        return Page(data=[_row_to_job(row) for row in page], next_cursor=next_cursor)

    def update(
        self,
        job_id: str,
        changes: JobChanges,
        *,
        expected: Collection[JobStatus],
        expected_attempt: int | None = None,
    ) -> Job | None:
        expected_values = sorted({JobStatus(status).value for status in expected})
        if not expected_values:
            return None
        assignments = ["updated_at = ?"]
        params: list[Any] = [format_time(utcnow())]
        for field in sorted(changes.model_fields_set):
            value = getattr(changes, field)
            if field in ("status", "attempt") and value is None:
                continue  # not nullable on a Job; None means "leave alone"
            assignments.append(f"{field} = ?")
            params.append(_column_value(field, value))
        where = f"id = ? AND status IN ({', '.join('?' for _ in expected_values)})"
        params += [job_id, *expected_values]
        if expected_attempt is not None:
            where += " AND attempt = ?"
            params.append(expected_attempt)
        rows = self._db.query(f"UPDATE jobs SET {', '.join(assignments)} WHERE {where} RETURNING *", params)
        return _row_to_job(rows[0]) if rows else None

    def find(
        self,
        *,
        statuses: Collection[JobStatus],
        limit: int = 100,
        unsent: bool = False,
        holding_compute: bool = False,
    ) -> list[Job]:
        values = sorted({JobStatus(status).value for status in statuses})
        if not values:
            return []
        where = f"status IN ({', '.join('?' for _ in values)})"
        if unsent:
            where += " AND enqueued_at IS NULL"
        if holding_compute:
            where += " AND launch_handle IS NOT NULL"
        rows = self._db.query(f"SELECT * FROM jobs WHERE {where} ORDER BY created_at, id LIMIT ?", [*values, limit])
        return [_row_to_job(row) for row in rows]

    def claim(self, job_id: str, *, max_active: int, max_active_per_user: int) -> Job | None:
        # One statement inside BEGIN IMMEDIATE: the write lock is held from before the counts are read until the
        # row is written, so no other process can claim in between (SQLite has a single writer).
        active = tuple(sorted(status.value for status in JobStatus.active()))
        with self._db.transaction() as conn:
            rows = conn.execute(
                "UPDATE jobs SET status = ?, attempt = attempt + 1, updated_at = ? "
                "WHERE id = ? AND status = ? "
                "AND (SELECT count(*) FROM jobs AS other WHERE other.status IN (?, ?)) < ? "
                "AND (SELECT count(*) FROM jobs AS mine WHERE mine.status IN (?, ?) AND mine.user_id = jobs.user_id) < ? "
                "RETURNING *",
                (
                    JobStatus.STARTING.value,
                    format_time(utcnow()),
                    job_id,
                    JobStatus.QUEUED.value,
                    *active,
                    max_active,
                    *active,
                    max_active_per_user,
                ),
            ).fetchall()
        return _row_to_job(rows[0]) if rows else None

    def claim_many(
        self, job_ids: Sequence[str], *, max_active: int, max_active_per_user: int, event: NewEvent
    ) -> ClaimBatch:
        # BEGIN IMMEDIATE holds SQLite's write lock across the counts and the updates, as `claim` does.
        active_values = tuple(sorted(status.value for status in JobStatus.active()))
        in_active = f"status IN ({', '.join('?' for _ in active_values)})"
        now = format_time(utcnow())
        outcomes: dict[str, ClaimOutcome] = {}
        with self._db.transaction() as conn:
            active = conn.execute(f"SELECT count(*) FROM jobs WHERE {in_active}", active_values).fetchone()[0]
            per_user: dict[str, int] = {}
            for job_id in dict.fromkeys(job_ids):
                row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
                if row is None:
                    outcomes[job_id] = Missing()
                    continue
                if row["status"] != JobStatus.QUEUED.value:
                    outcomes[job_id] = NotQueued(JobStatus(row["status"]))
                    continue
                if active >= max_active:
                    outcomes[job_id] = Capped(CapScope.GLOBAL, _row_to_job(row))
                    continue
                user_id = row["user_id"]
                if user_id not in per_user:
                    per_user[user_id] = conn.execute(
                        f"SELECT count(*) FROM jobs WHERE {in_active} AND user_id = ?", (*active_values, user_id)
                    ).fetchone()[0]
                if per_user[user_id] >= max_active_per_user:
                    outcomes[job_id] = Capped(CapScope.USER, _row_to_job(row))
                    continue
                claimed = _row_to_job(
                    conn.execute(
                        "UPDATE jobs SET status = ?, attempt = attempt + 1, updated_at = ? WHERE id = ? AND status = ? "
                        "RETURNING *",
                        (JobStatus.STARTING.value, now, job_id, JobStatus.QUEUED.value),
                    ).fetchone()
                )
                data = {**event.data, "attempt": claimed.attempt}
                _insert_event(conn, job_id, NewEvent(event.kind, event.message, data), now)
                active += 1
                per_user[user_id] += 1
                outcomes[job_id] = Claimed(claimed)
        return ClaimBatch(outcomes=outcomes, active=active)

    def record_launches(self, launches: Sequence[LaunchRecord], *, expected: Collection[JobStatus]) -> set[str]:
        expected_values = sorted({JobStatus(status).value for status in expected})
        if not launches or not expected_values:
            return set()
        now = format_time(utcnow())
        recorded: set[str] = set()
        with self._db.transaction() as conn:
            for launch in launches:
                row = conn.execute(
                    f"UPDATE jobs SET launch_handle = ?, updated_at = ? WHERE id = ? AND attempt = ? "
                    f"AND status IN ({', '.join('?' for _ in expected_values)}) RETURNING id",
                    (launch.handle, now, launch.job_id, launch.attempt, *expected_values),
                ).fetchone()
                if row is not None:
                    _insert_event(conn, launch.job_id, launch.event, now)
                    recorded.add(launch.job_id)
        return recorded

    def ping(self) -> None:
        self._db.ping()

    def count(self, *, statuses: Collection[JobStatus], user_id: str | None = None) -> int:
        values = sorted({JobStatus(status).value for status in statuses})
        if not values:
            return 0
        sql = f"SELECT count(*) FROM jobs WHERE status IN ({', '.join('?' for _ in values)})"
        params: list[Any] = list(values)
        if user_id is not None:
            sql += " AND user_id = ?"
            params.append(user_id)
        return self._db.query(sql, params)[0][0]

    # --- events and metrics ----------------------------------------------------------------------------------

    def append_event(self, job_id: str, kind: str, message: str, data: dict[str, Any] | None = None) -> JobEvent:
        try:
            rows = self._db.query(
                "INSERT INTO events (job_id, at, kind, message, data) VALUES (?, ?, ?, ?, ?) RETURNING *",
                (job_id, format_time(utcnow()), kind, message, json.dumps(data or {})),
            )
        except sqlite3.IntegrityError as error:
            raise JobNotFound(job_id) from error
        return self._row_to_event(rows[0])

    def list_events(self, job_id: str, *, after: int = 0, limit: int = 500) -> list[JobEvent]:
        rows = self._db.query(
            "SELECT * FROM events WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?", (job_id, after, max(0, limit))
        )
        return [self._row_to_event(row) for row in rows]

    def list_owned_events(
        self, job_id: str, *, user_id: str, after: int = 0, limit: int = 500
    ) -> list[JobEvent] | None:
        # One statement: the owned job joined to its events, so an owned job without events is one all-null row
        rows = self._db.query(
            "SELECT e.* FROM jobs AS j LEFT JOIN events AS e ON e.job_id = j.id AND e.id > ? "
            "WHERE j.id = ? AND j.user_id = ? ORDER BY e.id LIMIT ?",
            (after, job_id, user_id, max(1, limit)),
        )
        if not rows:
            return None
        return [self._row_to_event(row) for row in rows[: max(0, limit)] if row["id"] is not None]

    @staticmethod
    def _row_to_event(row: sqlite3.Row) -> JobEvent:
        return JobEvent(
            id=row["id"],
            job_id=row["job_id"],
            at=parse_time(row["at"]),
            kind=row["kind"],
            message=row["message"],
            data=json.loads(row["data"]),
        )

    def append_metrics(self, job_id: str, points: list[MetricPoint]) -> None:
        """Insert the points; a (name, step) reported again (a resumed attempt) replaces the earlier value."""
        if not points:
            return
        try:
            with self._db.transaction() as conn:
                conn.executemany(
                    "INSERT INTO metrics (job_id, name, step, value) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (job_id, name, step) DO UPDATE SET value = excluded.value",
                    [(job_id, point.name, point.step, point.value) for point in points],
                )
        except sqlite3.IntegrityError as error:
            raise JobNotFound(job_id) from error

    def list_metrics(self, job_id: str) -> dict[str, list[tuple[int, float]]]:
        rows = self._db.query("SELECT name, step, value FROM metrics WHERE job_id = ? ORDER BY name, step", (job_id,))
        return _series(rows)

    def list_owned_metrics(self, job_id: str, *, user_id: str) -> dict[str, list[tuple[int, float]]] | None:
        rows = self._db.query(
            "SELECT m.name, m.step, m.value FROM jobs AS j LEFT JOIN metrics AS m ON m.job_id = j.id "
            "WHERE j.id = ? AND j.user_id = ? ORDER BY m.name, m.step",
            (job_id, user_id),
        )
        if not rows:
            return None
        return _series([row for row in rows if row["name"] is not None])

    # --- idempotency keys ------------------------------------------------------------------------------------

    def forget_idempotency_keys(self, older_than: datetime) -> int:
        return self._db.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (format_time(older_than),))
