"""SqliteJobStore: the shared store contract, plus what only a file-backed store shared by processes can show."""

from __future__ import annotations

import math
import multiprocessing
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from robotrain.adapters.sqlite_store import SCHEMA_VERSION, SqliteJobStore
from robotrain.errors import StoreUnavailable
from robotrain.jobs.models import JobChanges, JobStatus, MetricPoint
from tests.robotrain.adapters.round_trip_contract import OneRoundTripContract
from tests.robotrain.adapters.store_contract import JobStoreContract, make_job


class TestSqliteJobStore(JobStoreContract, OneRoundTripContract):
    @pytest.fixture
    def store(self, tmp_path: Path):
        store = SqliteJobStore(tmp_path / "robotrain.sqlite3")
        yield store
        store.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "robotrain.sqlite3"


def _claim_in_another_process(path: str, job_ids: list[str], claimer: str, barrier, results) -> None:
    store = SqliteJobStore(Path(path))
    for job_id in job_ids:
        barrier.wait(timeout=30)  # both processes go for the same job at the same moment
        won = store.update(job_id, JobChanges(status=JobStatus.STARTING, launch_handle=claimer), expected={"queued"})
        results.put((job_id, claimer, won is not None))
    store.close()


def test_compare_and_set_from_two_processes_has_exactly_one_winner(db_path: Path) -> None:
    store = SqliteJobStore(db_path)
    job_ids = [store.create(make_job()).id for _ in range(20)]
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    processes = [
        context.Process(target=_claim_in_another_process, args=(str(db_path), job_ids, name, barrier, results))
        for name in ("proc-a", "proc-b")
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in range(2 * len(job_ids))]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    for job_id in job_ids:
        winners = [claimer for claimed_id, claimer, won in outcomes if claimed_id == job_id and won]
        assert len(winners) == 1, (job_id, outcomes)
        assert store.get(job_id).launch_handle == winners[0]
    store.close()


def test_a_lock_held_past_busy_timeout_raises_store_unavailable(db_path: Path) -> None:
    store = SqliteJobStore(db_path, busy_timeout_ms=100)
    job = store.create(make_job())
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        with pytest.raises(StoreUnavailable, match="unavailable"):
            store.update(job.id, JobChanges(launch_handle="x"), expected={JobStatus.QUEUED})
        assert store.get(job.id) == job  # WAL: readers are not blocked by the writer
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.update(job.id, JobChanges(launch_handle="x"), expected={JobStatus.QUEUED}) is not None
    store.close()


def test_an_unreadable_database_file_raises_store_unavailable(tmp_path: Path) -> None:
    directory_in_the_way = tmp_path / "robotrain.sqlite3"
    directory_in_the_way.mkdir()
    with pytest.raises(StoreUnavailable):
        SqliteJobStore(directory_in_the_way)


def test_reopening_keeps_the_data_and_the_schema_version(db_path: Path) -> None:
    first = SqliteJobStore(db_path)
    job = first.create(make_job())
    first.close()
    second = SqliteJobStore(db_path)
    assert second.get(job.id) == job
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT version FROM schema_versions WHERE component = 'jobs'").fetchall() == [
            (SCHEMA_VERSION,)
        ]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    second.close()


def test_a_database_from_newer_code_is_refused(db_path: Path) -> None:
    SqliteJobStore(db_path).close()
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE schema_versions SET version = ? WHERE component = 'jobs'", (SCHEMA_VERSION + 1,))
    with pytest.raises(RuntimeError, match="newer"):
        SqliteJobStore(db_path)


def test_the_list_query_uses_an_index(db_path: Path) -> None:
    SqliteJobStore(db_path).close()
    with sqlite3.connect(db_path) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM jobs WHERE user_id = ? AND (created_at, id) < (?, ?) "
            "ORDER BY created_at DESC, id DESC LIMIT 21",
            ("u", "2026", "job"),
        ).fetchall()
    text = " ".join(row[-1] for row in plan)
    assert "jobs_user_created" in text and "TEMP B-TREE" not in text


def test_a_nan_metric_comes_back_as_nan(db_path: Path) -> None:
    store = SqliteJobStore(db_path)
    job = store.create(make_job())
    store.append_metrics(job.id, [MetricPoint(step=1, name="loss", value=math.nan)])
    [(step, value)] = store.list_metrics(job.id)["loss"]
    assert step == 1 and math.isnan(value)
    store.close()


def test_naive_datetimes_are_stored_as_utc(db_path: Path) -> None:
    store = SqliteJobStore(db_path)
    job = store.create(make_job(created_at=datetime(2026, 3, 1, 12, 0, 0)))
    assert store.get(job.id).created_at == datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    store.close()


def _cancel_in_forked_child(store: SqliteJobStore, job_id: str) -> None:
    cancelled = store.update(job_id, JobChanges(status=JobStatus.CANCELLED), expected={JobStatus.QUEUED})
    store.close()
    raise SystemExit(0 if cancelled is not None else 3)


def test_a_store_opened_before_fork_works_in_the_child_and_the_parent(db_path: Path) -> None:
    store = SqliteJobStore(db_path)
    job = store.create(make_job())
    child = multiprocessing.get_context("fork").Process(target=_cancel_in_forked_child, args=(store, job.id))
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0
    assert store.get(job.id).status == JobStatus.CANCELLED  # the parent's connection was not disturbed
    store.close()
