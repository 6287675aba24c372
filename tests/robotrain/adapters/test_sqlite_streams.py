"""SqliteStreamStore and SqliteWebhookStore: the shared contracts on the job store's SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from robotrain.adapters.sqlite_store import SqliteJobStore
from robotrain.adapters.sqlite_streams import SqliteStreamStore
from robotrain.adapters.sqlite_webhooks import SqliteWebhookStore
from robotrain.jobs.models import MetricPoint
from tests.robotrain.adapters.store_contract import make_job
from tests.robotrain.adapters.stream_contract import StreamStoreContract
from tests.robotrain.adapters.webhook_contract import WebhookStoreContract


class TestSqliteStreamStore(StreamStoreContract):
    @pytest.fixture
    def stores(self, tmp_path: Path):
        jobs = SqliteJobStore(tmp_path / "robotrain.sqlite3")
        streams = SqliteStreamStore(tmp_path / "robotrain.sqlite3")
        yield jobs, streams
        streams.close()
        jobs.close()


class TestSqliteWebhookStore(WebhookStoreContract):
    @pytest.fixture
    def stores(self, tmp_path: Path):
        jobs = SqliteJobStore(tmp_path / "robotrain.sqlite3")
        hooks = SqliteWebhookStore(tmp_path / "robotrain.sqlite3")
        yield jobs, hooks
        hooks.close()
        jobs.close()


def test_points_written_before_the_stream_tables_existed_are_streamed_too(tmp_path: Path) -> None:
    jobs = SqliteJobStore(tmp_path / "robotrain.sqlite3")
    job = jobs.create(make_job("alice"))
    jobs.append_metrics(job.id, [MetricPoint(step=1, name="train/loss", value=2.0)])
    streams = SqliteStreamStore(tmp_path / "robotrain.sqlite3")
    SqliteStreamStore(tmp_path / "robotrain.sqlite3").close()  # opening again adds nothing twice
    feed = streams.job_feed(job.id, user_id="alice")
    assert feed is not None and [(m.step, m.value) for m in feed.metrics] == [(1, 2.0)]
    streams.close()
    jobs.close()
