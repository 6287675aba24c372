"""The behaviour every ApiKeyStore adapter must show, as a reusable pytest class (subclass it and provide a fresh,
empty `api_key_store` fixture). The module has no `test_` prefix, so pytest collects it only through subclasses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from robotrain.apikeys.models import ApiKey, hash_secret, new_api_key_id, new_secret
from robotrain.ports import ApiKeyStore

T0 = datetime(2026, 12, 2, 11, 0, 0, 123456, tzinfo=UTC)


def make_key(user_id: str = "user_alice", *, created_at: datetime = T0, name: str = "laptop", **fields) -> ApiKey:
    return ApiKey(
        id=new_api_key_id(),
        user_id=user_id,
        name=name,
        key_hash=hash_secret(new_secret()),
        created_at=created_at,
        **fields,
    )


class ApiKeyStoreContract:
    @pytest.fixture
    def api_key_store(self) -> ApiKeyStore:
        raise NotImplementedError

    def test_a_created_key_is_found_by_its_hash_with_every_field(self, api_key_store: ApiKeyStore) -> None:
        key = make_key(expires_at=T0 + timedelta(days=30))
        assert api_key_store.create_api_key(key) == key
        found = api_key_store.find_api_key(key.key_hash)
        assert found == key
        assert found.created_at.utcoffset() == timedelta(0)

    def test_an_unknown_hash_finds_nothing(self, api_key_store: ApiKeyStore) -> None:
        api_key_store.create_api_key(make_key())
        assert api_key_store.find_api_key(hash_secret(new_secret())) is None

    def test_a_users_list_has_their_unrevoked_keys_newest_first(self, api_key_store: ApiKeyStore) -> None:
        older = api_key_store.create_api_key(make_key(created_at=T0, name="older"))
        expired = api_key_store.create_api_key(
            make_key(created_at=T0 + timedelta(seconds=1), expires_at=T0 + timedelta(seconds=2))
        )
        newer = api_key_store.create_api_key(make_key(created_at=T0 + timedelta(seconds=3), name="newer"))
        revoked = api_key_store.create_api_key(make_key(created_at=T0 + timedelta(seconds=4)))
        api_key_store.create_api_key(make_key("user_bob", created_at=T0 + timedelta(seconds=5)))
        api_key_store.revoke_api_key("user_alice", revoked.id, revoked_at=T0 + timedelta(seconds=6))

        assert [key.id for key in api_key_store.list_api_keys("user_alice")] == [newer.id, expired.id, older.id]
        assert api_key_store.list_api_keys("user_carol") == []

    def test_revoking_marks_the_key_once(self, api_key_store: ApiKeyStore) -> None:
        key = api_key_store.create_api_key(make_key())
        when = T0 + timedelta(minutes=5)

        revoked = api_key_store.revoke_api_key("user_alice", key.id, revoked_at=when)

        assert revoked is not None and revoked.revoked_at == when
        assert api_key_store.find_api_key(key.key_hash).revoked_at == when  # still found: so it can be refused
        assert api_key_store.revoke_api_key("user_alice", key.id, revoked_at=when + timedelta(1)) is None

    def test_nobody_revokes_another_users_key(self, api_key_store: ApiKeyStore) -> None:
        key = api_key_store.create_api_key(make_key("user_alice"))
        assert api_key_store.revoke_api_key("user_bob", key.id, revoked_at=T0) is None
        assert api_key_store.revoke_api_key("user_alice", "key_missing", revoked_at=T0) is None
        assert api_key_store.find_api_key(key.key_hash).revoked_at is None
