"""ApiKeyService over the real SQLite store, with injected clocks: what a key proves, for how long a process trusts
it, and when a revocation reaches the process that revoked it and the others."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from robotrain.adapters.sqlite_api_keys import SqliteApiKeyStore
from robotrain.apikeys.errors import ApiKeyNotFound, TooManyApiKeys
from robotrain.apikeys.models import hash_secret
from robotrain.apikeys.service import MAX_KEYS_PER_USER, ApiKeyService
from robotrain.errors import Unauthorized

T0 = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)


class Clocks:
    def __init__(self) -> None:
        self.monotonic = 0.0
        self.wall = T0

    def advance(self, seconds: float) -> None:
        self.monotonic += seconds
        self.wall += timedelta(seconds=seconds)


class CountingStore(SqliteApiKeyStore):
    finds = 0

    def find_api_key(self, key_hash: str):
        self.finds += 1
        return super().find_api_key(key_hash)


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def store(tmp_path: Path) -> CountingStore:
    return CountingStore(tmp_path / "robotrain.sqlite3")


def service(store, clocks: Clocks, ttl_s: float = 30) -> ApiKeyService:
    """One API process's service (each has its own cache) over the shared store."""
    return ApiKeyService(store, cache_ttl_s=ttl_s, clock=lambda: clocks.monotonic, now=lambda: clocks.wall)


def test_a_key_is_shown_once_stored_as_a_hash_and_proves_its_user(store, clocks) -> None:
    keys = service(store, clocks)
    key, secret = keys.create("user_alice", "laptop")

    assert secret.startswith("rt_") and len(secret) == 46
    assert key.key_hash == hash_secret(secret) and secret not in key.model_dump_json()
    assert keys.authenticate(secret) == "user_alice"


@pytest.mark.parametrize("token", ["rt_short", "rt_" + "A" * 43, "not-a-key", ""])
def test_a_malformed_or_unknown_key_is_unauthorized(store, clocks, token) -> None:
    with pytest.raises(Unauthorized):
        service(store, clocks).authenticate(token)


def test_a_verified_key_is_cached_so_most_requests_read_no_store(store, clocks) -> None:
    keys = service(store, clocks, ttl_s=30)
    _, secret = keys.create("user_alice", "laptop")

    for _ in range(5):
        keys.authenticate(secret)
        clocks.advance(5)
    assert store.finds == 1
    clocks.advance(10)  # 35 s after the first check: past the TTL
    keys.authenticate(secret)
    assert store.finds == 2


def test_a_revoked_key_is_refused_at_once_here_and_within_the_ttl_elsewhere(store, clocks) -> None:
    here, elsewhere = service(store, clocks, ttl_s=30), service(store, clocks, ttl_s=30)
    key, secret = here.create("user_alice", "laptop")
    assert here.authenticate(secret) == elsewhere.authenticate(secret) == "user_alice"

    here.revoke("user_alice", key.id)

    with pytest.raises(Unauthorized, match="revoked"):
        here.authenticate(secret)
    assert elsewhere.authenticate(secret) == "user_alice"  # its cached verification is still fresh
    clocks.advance(30)
    with pytest.raises(Unauthorized, match="revoked"):
        elsewhere.authenticate(secret)


def test_an_expired_key_is_refused_even_from_the_cache(store, clocks) -> None:
    keys = service(store, clocks, ttl_s=3600)
    _, secret = keys.create("user_alice", "ci", expires_in_days=1)
    assert keys.authenticate(secret) == "user_alice"
    clocks.wall += timedelta(days=1)
    with pytest.raises(Unauthorized, match="expired"):
        keys.authenticate(secret)


def test_only_the_owner_revokes_a_key_and_only_once(store, clocks) -> None:
    keys = service(store, clocks)
    key, _ = keys.create("user_alice", "laptop")
    with pytest.raises(ApiKeyNotFound):
        keys.revoke("user_bob", key.id)
    keys.revoke("user_alice", key.id)
    with pytest.raises(ApiKeyNotFound):
        keys.revoke("user_alice", key.id)
    assert keys.list("user_alice") == []


def test_a_user_holds_a_bounded_number_of_keys(store, clocks) -> None:
    keys = service(store, clocks)
    for index in range(MAX_KEYS_PER_USER):
        keys.create("user_alice", f"key {index}")
    with pytest.raises(TooManyApiKeys):
        keys.create("user_alice", "one more")
    assert keys.create("user_bob", "bob's first")[0].user_id == "user_bob"
