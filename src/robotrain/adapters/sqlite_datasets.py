"""The embedded DatasetStore: tables beside the job store's in the same SQLite file (robotrain.sqlite3), so "is this
dataset used by an unfinished job" and "delete it unless it is" are one statement against both."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from robotrain.adapters.sqlite_db import BUSY_TIMEOUT_MS, SqliteDatabase
from robotrain.adapters.sqlite_store import parse_time
from robotrain.datasets.errors import DatasetInUse
from robotrain.datasets.models import Dataset, DatasetPage
from robotrain.errors import InvalidRequest, JobConflict, StoreUnavailable
from robotrain.jobs.cursor import decode_cursor, encode_cursor, format_time
from robotrain.jobs.models import JobStatus, utcnow
from training.data.access import UPLOAD_SCHEME

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    bytes INTEGER NOT NULL CHECK (bytes >= 0),
    episodes INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    features TEXT NOT NULL,
    policy_features TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS datasets_user_created ON datasets (user_id, created_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS artifact_usage (
    job_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    bytes INTEGER NOT NULL CHECK (bytes >= 0),
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS artifact_usage_user ON artifact_usage (user_id)
"""

_UNFINISHED = tuple(sorted(status.value for status in (JobStatus.QUEUED, JobStatus.STARTING, JobStatus.RUNNING)))
# An unfinished job of the user whose spec names the dataset (the jobs table belongs to the job store, same file).
_IN_USE = (
    "EXISTS (SELECT 1 FROM jobs WHERE jobs.user_id = ? AND jobs.status IN (?, ?, ?) "
    "AND json_extract(jobs.spec, '$.dataset.uri') = ?)"
)


def _row_to_dataset(row: sqlite3.Row) -> Dataset:
    return Dataset(
        id=row["id"],
        user_id=row["user_id"],
        name=row["name"],
        bytes=row["bytes"],
        episodes=row["episodes"],
        frames=row["frames"],
        features=json.loads(row["features"]),
        policy_features=json.loads(row["policy_features"]),
        created_at=parse_time(row["created_at"]),
    )


class SqliteDatasetStore:
    """DatasetStore on the job store's SQLite file. Create the job store first: in-use checks read its jobs table."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS):
        self.path = Path(path)
        self._db = SqliteDatabase(
            self.path, unavailable=StoreUnavailable, what="dataset store", busy_timeout_ms=busy_timeout_ms
        )
        self._db.create_schema(_SCHEMA, SCHEMA_VERSION, component="datasets")

    def close(self) -> None:
        self._db.close()

    def create(self, dataset: Dataset) -> Dataset:
        try:
            rows = self._db.query(
                "INSERT INTO datasets (id, user_id, name, bytes, episodes, frames, features, policy_features, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
                (
                    dataset.id,
                    dataset.user_id,
                    dataset.name,
                    dataset.bytes,
                    dataset.episodes,
                    dataset.frames,
                    json.dumps(dataset.features),
                    json.dumps(dataset.policy_features),
                    format_time(dataset.created_at),
                ),
            )
        except sqlite3.IntegrityError as error:
            raise JobConflict(f"a dataset with id {dataset.id!r} already exists") from error
        return _row_to_dataset(rows[0])

    def get(self, dataset_id: str, *, user_id: str) -> Dataset | None:
        rows = self._db.query("SELECT * FROM datasets WHERE id = ? AND user_id = ?", (dataset_id, user_id))
        return _row_to_dataset(rows[0]) if rows else None

    def list_datasets(self, *, user_id: str, limit: int = 20, cursor: str | None = None) -> DatasetPage:
        if limit < 1:
            raise InvalidRequest("limit must be at least 1")
        where, params = "user_id = ?", [user_id]
        if cursor is not None:
            after_time, after_id = decode_cursor(cursor)
            where += " AND (created_at, id) < (?, ?)"
            params += [format_time(after_time), after_id]
        rows = self._db.query(
            f"SELECT * FROM datasets WHERE {where} ORDER BY created_at DESC, id DESC LIMIT ?", [*params, limit + 1]
        )
        page = [_row_to_dataset(row) for row in rows[:limit]]
        more = len(rows) > limit
        return DatasetPage(data=page, next_cursor=encode_cursor(page[-1].created_at, page[-1].id) if more else None)

    def in_use(self, dataset_id: str, *, user_id: str) -> bool:
        rows = self._db.query(f"SELECT {_IN_USE}", (user_id, *_UNFINISHED, f"{UPLOAD_SCHEME}://{dataset_id}"))
        return bool(rows[0][0])

    def delete(self, dataset_id: str, *, user_id: str) -> bool:
        with self._db.transaction() as conn:  # BEGIN IMMEDIATE: no job is created between the check and the delete
            if conn.execute("SELECT 1 FROM datasets WHERE id = ? AND user_id = ?", (dataset_id, user_id)).fetchone():
                in_use = conn.execute(
                    f"SELECT {_IN_USE}", (user_id, *_UNFINISHED, f"{UPLOAD_SCHEME}://{dataset_id}")
                ).fetchone()[0]
                if in_use:
                    raise DatasetInUse(dataset_id)
                conn.execute("DELETE FROM datasets WHERE id = ? AND user_id = ?", (dataset_id, user_id))
                return True
        return False

    def record_artifact_bytes(self, job_id: str, *, user_id: str, size: int) -> None:
        self._db.execute(
            "INSERT INTO artifact_usage (job_id, user_id, bytes, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (job_id) DO UPDATE SET bytes = excluded.bytes, updated_at = excluded.updated_at",
            (job_id, user_id, size, format_time(utcnow())),
        )

    def usage_bytes(self, user_id: str) -> int:
        rows = self._db.query(
            "SELECT (SELECT coalesce(sum(bytes), 0) FROM datasets WHERE user_id = ?) "
            "+ (SELECT coalesce(sum(bytes), 0) FROM artifact_usage WHERE user_id = ?)",
            (user_id, user_id),
        )
        return int(rows[0][0])
