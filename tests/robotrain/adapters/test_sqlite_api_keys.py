"""SqliteApiKeyStore: the ApiKeyStore contract, in the job store's SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from robotrain.adapters.sqlite_api_keys import SqliteApiKeyStore
from robotrain.adapters.sqlite_store import SqliteJobStore
from tests.robotrain.adapters.api_key_store_contract import ApiKeyStoreContract, make_key


class TestSqliteApiKeyStore(ApiKeyStoreContract):
    @pytest.fixture
    def api_key_store(self, tmp_path: Path):
        store = SqliteApiKeyStore(tmp_path / "robotrain.sqlite3")
        yield store
        store.close()


def test_keys_live_beside_the_jobs_in_one_file_with_their_own_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "robotrain.sqlite3"
    jobs, keys = SqliteJobStore(path), SqliteApiKeyStore(path)
    key = keys.create_api_key(make_key())
    reopened = SqliteApiKeyStore(path)
    try:
        assert reopened.find_api_key(key.key_hash) == key
        versions = dict(jobs._db.query("SELECT component, version FROM schema_versions"))
        assert versions == {"jobs": 1, "apikeys": 1}
    finally:
        for store in (jobs, keys, reopened):
            store.close()
