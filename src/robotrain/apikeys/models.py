"""An API key as stored (its secret never is: only the sha256 of it), and how secrets are made and hashed."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from pydantic import BaseModel, ConfigDict

API_KEY_PREFIX = "rt_"
# 32 random bytes, URL-safe base64 without padding: 43 characters after the prefix.
_SECRET_BYTES = 32
SECRET_LENGTH = len(API_KEY_PREFIX) + 43


class ApiKey(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    user_id: str
    name: str
    key_hash: str  # sha256 of the whole secret, hex
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def usable_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


def new_api_key_id() -> str:
    return "key_" + secrets.token_hex(12)


def new_secret() -> str:
    """A key's secret: the prefix (so a leaked key is recognisable, and told apart from a JWT) and 256 random bits."""
    return API_KEY_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def hash_secret(secret: str) -> str:
    """A secret of 256 random bits needs no slow hash: sha256 cannot be reversed, and no dictionary holds it."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def looks_like_api_key(token: str) -> bool:
    return token.startswith(API_KEY_PREFIX)
