"""One JWT verifier for every token source: locally minted keys, or Clerk's JWKS or PEM.

Only the key source differs between them; the checks are the same: RS256 only, exp/nbf/iat with a few seconds of
leeway (an `iat` in the future is refused), the issuer when one is configured, and `azp` against the authorized
parties when both are present (a missing `azp` is accepted, as Clerk's manual-verification docs say).
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any, Protocol

import jwt

from robotrain.errors import Unauthorized

ALGORITHM = "RS256"


class SigningKeySource(Protocol):
    def key_for(self, kid: str | None) -> Any:
        """A public key PyJWT accepts for this key id; raises Unauthorized (unknown kid) or AuthUnavailable (the
        keys cannot be fetched right now)."""


class JwtVerifier:
    """Implements ports.TokenVerifier: `verify(token)` returns the `sub` claim or raises Unauthorized."""

    def __init__(
        self,
        keys: SigningKeySource,
        *,
        issuer: str | None,
        authorized_parties: Collection[str] = (),
        leeway_s: float = 5,
    ):
        self._keys = keys
        self._issuer = issuer
        self._authorized_parties = frozenset(authorized_parties)
        self._leeway_s = leeway_s

    def verify(self, token: str) -> str:
        if not token or not token.strip():
            raise Unauthorized("empty bearer token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("malformed token") from exc
        # Checked before any key lookup, so `alg: none` or HS256 never reach a key source or a network fetch.
        if header.get("alg") != ALGORITHM:
            raise Unauthorized(f"token algorithm must be {ALGORITHM}")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise Unauthorized("malformed token key id")
        key = self._keys.key_for(kid)
        required = ["exp", "iat", "sub"] + (["iss"] if self._issuer else [])
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": required, "verify_signature": True},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise Unauthorized("token not valid yet") from exc
        except jwt.InvalidIssuerError as exc:
            raise Unauthorized("token issuer not accepted") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("invalid token") from exc
        self._check_iat(claims)
        azp = claims.get("azp")
        if azp is not None and self._authorized_parties and azp not in self._authorized_parties:
            raise Unauthorized("token authorized party not accepted")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise Unauthorized("token has no subject")
        return sub

    def _check_iat(self, claims: dict[str, Any]) -> None:
        # PyJWT rejects a future iat itself; this keeps the rule explicit should that default ever change.
        iat = claims.get("iat")
        if not isinstance(iat, int | float) or iat > time.time() + self._leeway_s:
            raise Unauthorized("token issued in the future")
