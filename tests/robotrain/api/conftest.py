"""The API over real embedded components (SQLite store, local queue, local artifacts) in a temp data dir. The
dispatch loop is off: nothing trains here; tests that need a job to move drive the store or the service."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from robotrain.auth.local_keys import LocalKeys
from robotrain.ports import Components
from robotrain.settings import Settings
from robotrain.wiring import build_components
from tests.support.app import api_app

INTERNAL_TOKEN = "internal-test-token-0123456789"

# A spec that validates; nothing runs it here.
VALID_SPEC = {
    "name": "push2d mlp",
    "policy": {"type": "mlp"},
    "dataset": {"uri": "builtin://push2d?episodes=10"},
    "training": {"steps": 50, "batch_size": 16},
    "eval": {"env": "push2d", "episodes": 5},
    "compute": {"gpu": "T4"},
}


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One minted key pair for the session: RSA key generation costs up to a second on a busy CPU."""
    data_dir = tmp_path_factory.mktemp("keys")
    LocalKeys(data_dir).kid  # noqa: B018 - first use writes the key
    return data_dir / "keys"


def seed_keys(key_dir: Path, data_dir: Path) -> None:
    shutil.copytree(key_dir, data_dir / "keys")


@pytest.fixture
def settings(tmp_path: Path, key_dir: Path) -> Settings:
    seed_keys(key_dir, tmp_path / "data")
    return Settings(data_dir=tmp_path / "data", internal_token=INTERNAL_TOKEN)


@pytest.fixture
def components(settings: Settings) -> Components:
    return build_components(settings)


@pytest.fixture
def client(settings: Settings, components: Components) -> Iterator[TestClient]:
    app = api_app(components)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def keys(settings: Settings) -> LocalKeys:
    return LocalKeys(settings.data_dir)


@pytest.fixture
def alice(keys: LocalKeys) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys.mint('alice')}"}


@pytest.fixture
def bob(keys: LocalKeys) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys.mint('bob')}"}


@pytest.fixture
def internal() -> dict[str, str]:
    return {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
