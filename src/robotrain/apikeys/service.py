"""What a user may do with API keys (create, list, revoke), and authenticating a request that presents one.

Authentication looks the key up by the sha256 of its secret (one indexed read), compares the stored hash in constant
time, and refuses a revoked or expired key. A verified key's user is then cached in this process for `cache_ttl_s`,
so most requests make no store round trip. Revoking a key evicts it from this process's cache at once; another API
process (Modal runs several) may accept it until its cached entry is older than `cache_ttl_s`.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from robotrain.apikeys.errors import ApiKeyNotFound, TooManyApiKeys
from robotrain.apikeys.models import (
    SECRET_LENGTH,
    ApiKey,
    hash_secret,
    looks_like_api_key,
    new_api_key_id,
    new_secret,
)
from robotrain.errors import Unauthorized
from robotrain.jobs.models import utcnow
from robotrain.ports import ApiKeyStore

# Unrevoked keys one user may hold: keys are for people and their scripts, not one per request.
MAX_KEYS_PER_USER = 50
# Cached verifications kept at most; past it the oldest are dropped (a cache miss costs one store read).
MAX_CACHED = 10_000


@dataclass(frozen=True)
class _Verified:
    user_id: str
    key_id: str
    expires_at: datetime | None
    cached_at: float  # on the monotonic clock


class ApiKeyService:
    def __init__(
        self,
        store: ApiKeyStore,
        *,
        cache_ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utcnow,
    ):
        self._store = store
        self._ttl_s = cache_ttl_s
        self._clock = clock
        self._now = now
        self._cache: dict[str, _Verified] = {}  # key hash -> the verified key's user
        self._lock = threading.Lock()

    # --- a user's keys -----------------------------------------------------------------------------------------

    def create(self, user_id: str, name: str, *, expires_in_days: int | None = None) -> tuple[ApiKey, str]:
        """A new key and its secret, which is returned only here and stored only as a hash."""
        if len(self._store.list_api_keys(user_id)) >= MAX_KEYS_PER_USER:
            raise TooManyApiKeys(f"you have {MAX_KEYS_PER_USER} API keys; revoke one before creating another")
        secret = new_secret()
        now = self._now()
        key = ApiKey(
            id=new_api_key_id(),
            user_id=user_id,
            name=name,
            key_hash=hash_secret(secret),
            created_at=now,
            expires_at=None if expires_in_days is None else now + timedelta(days=expires_in_days),
        )
        return self._store.create_api_key(key), secret

    def list(self, user_id: str) -> list[ApiKey]:
        return self._store.list_api_keys(user_id)

    def revoke(self, user_id: str, key_id: str) -> None:
        """Revoke the user's key; ApiKeyNotFound for a key that is not theirs, does not exist or is revoked."""
        if self._store.revoke_api_key(user_id, key_id, revoked_at=self._now()) is None:
            raise ApiKeyNotFound(key_id)
        with self._lock:
            for key_hash in [h for h, verified in self._cache.items() if verified.key_id == key_id]:
                del self._cache[key_hash]

    # --- authentication ----------------------------------------------------------------------------------------

    def authenticate(self, secret: str) -> str:
        """The user id the key belongs to; Unauthorized when it is malformed, unknown, revoked or expired."""
        if not looks_like_api_key(secret) or len(secret) != SECRET_LENGTH:
            raise Unauthorized("invalid API key")
        key_hash = hash_secret(secret)
        verified = self._cached(key_hash)
        if verified is None:
            verified = self._verify(key_hash)
        if verified.expires_at is not None and self._now() >= verified.expires_at:
            raise Unauthorized("this API key has expired; create a new one")
        return verified.user_id

    def _cached(self, key_hash: str) -> _Verified | None:
        with self._lock:
            verified = self._cache.get(key_hash)
            if verified is not None and self._clock() - verified.cached_at >= self._ttl_s:
                del self._cache[key_hash]
                return None
            return verified

    def _verify(self, key_hash: str) -> _Verified:
        key = self._store.find_api_key(key_hash)
        # The lookup is by hash; the comparison is in constant time anyway, so no timing tells how much matched.
        if key is None or not hmac.compare_digest(key.key_hash, key_hash):
            raise Unauthorized("invalid API key")
        if key.revoked_at is not None:
            raise Unauthorized("this API key has been revoked")
        verified = _Verified(key.user_id, key.id, key.expires_at, self._clock())
        if self._ttl_s > 0:
            with self._lock:
                if len(self._cache) >= MAX_CACHED:
                    del self._cache[next(iter(self._cache))]  # the oldest entry (dicts keep insertion order)
                self._cache[key_hash] = verified
        return verified
