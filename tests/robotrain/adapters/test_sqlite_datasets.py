"""SqliteDatasetStore: the dataset store contract, on the job store's file."""

from __future__ import annotations

from pathlib import Path

import pytest

from robotrain.adapters.sqlite_datasets import SqliteDatasetStore
from robotrain.adapters.sqlite_store import SqliteJobStore
from tests.robotrain.adapters.dataset_store_contract import DatasetStoreContract


class TestSqliteDatasetStore(DatasetStoreContract):
    @pytest.fixture
    def stores(self, tmp_path: Path):
        jobs = SqliteJobStore(tmp_path / "robotrain.sqlite3")
        datasets = SqliteDatasetStore(tmp_path / "robotrain.sqlite3")
        yield jobs, datasets
        datasets.close()
        jobs.close()
