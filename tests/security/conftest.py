"""An in-process app over real embedded components (SQLite store, local queue, local artifacts) in a temp dir, with
dispatch off so nothing trains, and local tokens for two users."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from robotrain.auth.local_keys import LocalKeys
from robotrain.ports import Components
from robotrain.settings import Settings
from robotrain.wiring import build_components
from tests.support.app import api_app

INTERNAL_TOKEN = "security-internal-token-0123456789"


@pytest.fixture(scope="session")
def local_key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One key pair for the session (RSA generation is slow on a busy CPU), copied into each data dir."""
    data_dir = tmp_path_factory.mktemp("security-keys")
    LocalKeys(data_dir).kid  # noqa: B018 - first use writes the key
    return data_dir / "keys"


def make_settings(data_dir: Path, key_dir: Path, **overrides: object) -> Settings:
    import shutil

    shutil.copytree(key_dir, data_dir / "keys")
    return Settings(data_dir=data_dir, internal_token=INTERNAL_TOKEN, **overrides)


@pytest.fixture
def components(tmp_path: Path, local_key_dir: Path) -> Components:
    return build_components(make_settings(tmp_path / "data", local_key_dir))


@pytest.fixture
def client(components: Components) -> Iterator[TestClient]:
    with TestClient(api_app(components)) as test_client:
        yield test_client


def bearer(components: Components, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {LocalKeys(components.settings.data_dir).mint(user)}"}
