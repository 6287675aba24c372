"""Clerk's signing keys for JwtVerifier (Clerk docs, "Manual JWT verification": the PEM public key, the Frontend API JWKS, or the Backend API `/v1/jwks`).

Three sources, chosen from settings in this order:
1. CLERK_JWT_KEY: the PEM public key from Clerk's dashboard; no network at all.
2. A JWKS over HTTPS: CLERK_JWKS_URL, else `https://<Frontend API host>/.well-known/jwks.json` with the host decoded
   from CLERK_PUBLISHABLE_KEY ("pk_test_"/"pk_live_" + base64("<host>$")).
3. The Backend API JWKS, `{CLERK_API_URL}/v1/jwks` with `Authorization: Bearer CLERK_SECRET_KEY`.

A JWKS is cached by kid. An unknown kid refetches at most once per cooldown (the guard against tokens with made-up
kids turning into a request flood against Clerk); concurrent requests share one in-flight fetch; a fetch is bounded
in time, so an unreachable Clerk fails requests fast with AuthUnavailable (503) instead of hanging them. Only RS256
keys are kept.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from robotrain.auth.verifier import ALGORITHM, SigningKeySource
from robotrain.errors import AuthUnavailable, Unauthorized
from robotrain.settings import Settings

log = logging.getLogger(__name__)

PUBLISHABLE_KEY_PREFIXES = ("pk_test_", "pk_live_")
MAX_JWKS_BYTES = 256 * 1024  # a JWKS is a few KiB; anything far larger is not one
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----(.*?)-----END \1-----", re.DOTALL)


# --- configuration helpers ---------------------------------------------------------------------------------------


def frontend_api_host(publishable_key: str) -> str:
    """The Frontend API host encoded in a Clerk publishable key, e.g. `clerk.example.com`."""
    prefix = next((p for p in PUBLISHABLE_KEY_PREFIXES if publishable_key.startswith(p)), None)
    if prefix is None:
        raise ValueError("CLERK_PUBLISHABLE_KEY must start with pk_test_ or pk_live_")
    encoded = publishable_key[len(prefix) :].strip()
    try:
        decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("CLERK_PUBLISHABLE_KEY is not a Clerk publishable key (its body is not base64)") from None
    if not decoded.endswith("$") or not _HOST.match(decoded[:-1]):
        raise ValueError("CLERK_PUBLISHABLE_KEY is not a Clerk publishable key (it does not encode '<host>$')")
    return decoded[:-1]


def clerk_issuer(settings: Settings) -> str | None:
    """The `iss` to require: CLERK_ISSUER, else the Frontend API URL derived from CLERK_PUBLISHABLE_KEY, else None
    (then the issuer is not checked; set CLERK_ISSUER when only the PEM or the secret key is configured)."""
    if settings.clerk_issuer:
        return settings.clerk_issuer.rstrip("/")
    if settings.clerk_publishable_key:
        return f"https://{frontend_api_host(settings.clerk_publishable_key)}"
    return None


def normalize_pem(text: str) -> str:
    """A PEM with proper line breaks, from one that may have none (Clerk's dashboard copies it on one line, and
    env files often hold it with literal `\\n`s)."""
    cleaned = text.strip().replace("\\n", "\n")
    match = _PEM.search(cleaned)
    if not match:
        raise ValueError("CLERK_JWT_KEY is not a PEM public key (no -----BEGIN ...----- / -----END ...----- block)")
    label, body = match.group(1), re.sub(r"\s+", "", match.group(2))
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----", ""])


def load_rsa_public_key(pem_text: str) -> rsa.RSAPublicKey:
    pem = normalize_pem(pem_text).encode("ascii")
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise ValueError("CLERK_JWT_KEY could not be read as a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("CLERK_JWT_KEY must be an RSA public key (Clerk signs with RS256)")
    return key


# --- key sources ---------------------------------------------------------------------------------------------------


class PemKeySource:
    """One RSA public key for every token, whatever its kid (Clerk's PEM is the instance's only signing key)."""

    def __init__(self, pem_text: str):
        self._key = load_rsa_public_key(pem_text)

    def key_for(self, kid: str | None) -> Any:
        return self._key


def rs256_keys(jwks: Any) -> dict[str | None, Any]:
    """The RS256 signing keys of a JWKS document by kid; keys of another type, algorithm or use are skipped."""
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
        raise ValueError("not a JWKS document (no 'keys' list)")
    keys: dict[str | None, Any] = {}
    for entry in jwks["keys"]:
        if not isinstance(entry, Mapping) or entry.get("kty") != "RSA":
            continue
        if entry.get("alg", ALGORITHM) != ALGORITHM or entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        if kid is not None and not isinstance(kid, str):
            continue
        try:
            keys[kid] = jwt.PyJWK(dict(entry), algorithm=ALGORITHM).key
        except jwt.PyJWTError as exc:
            log.warning("skipping an unreadable key %r in the JWKS: %s", kid, exc)
    return keys


class JwksKeySource:
    """Keys from a JWKS URL, cached by kid.

    - A known kid is answered from the cache. After `max_age_s` the next request refreshes the set in the background
      of its own call if nobody else is; a failed refresh keeps the old keys (Clerk being down must not log out
      everyone whose key we already hold).
    - An unknown kid fetches the JWKS, but at most once per `cooldown_s` since the last fetch; within the cooldown it
      is refused at once. This is how a rotated key is picked up without a restart.
    - Requests that need a fetch while one is running wait for that one instead of starting another.
    - Each fetch is bounded by `timeout_s` in total. After a failed fetch, requests that need the network fail at
      once with AuthUnavailable for `failure_cooldown_s`, so an outage costs each request nothing but a 503.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
        cooldown_s: float = 30.0,
        max_age_s: float = 300.0,
        failure_cooldown_s: float = 2.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if timeout_s <= 0:
            raise ValueError("the JWKS timeout must be positive")
        self.url = url
        self._headers = {"Accept": "application/json", **(headers or {})}
        self._timeout_s = timeout_s
        self._cooldown_s = cooldown_s
        self._max_age_s = max_age_s
        self._failure_cooldown_s = failure_cooldown_s
        self._clock = clock
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False, transport=transport)
        self._fetch_lock = threading.Lock()
        self._keys: dict[str | None, Any] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last fetch, successful or not
        self._failure: str | None = None  # why the last fetch failed, if it did
        self.fetches = 0

    def key_for(self, kid: str | None) -> Any:
        key = self._cached(kid)
        if key is not None:
            if self._is_stale() and self._fetch_lock.acquire(blocking=False):
                try:
                    self._refresh_quietly()
                finally:
                    self._fetch_lock.release()
                key = self._cached(kid) or key
            return key
        # One fetch at a time; the waiters then read what it brought. Nobody waits longer than one fetch.
        if not self._fetch_lock.acquire(timeout=self._timeout_s + 1):
            raise AuthUnavailable("timed out waiting for Clerk's signing keys")
        try:
            key = self._cached(kid)
            if key is not None:
                return key
            now = self._clock()
            if self._failure is not None and self._within(self._attempted_at, self._failure_cooldown_s, now):
                raise AuthUnavailable(f"Clerk's signing keys cannot be fetched right now: {self._failure}")
            if self._within(self._attempted_at, self._cooldown_s, now) and self._failure is None:
                raise Unauthorized("token signed with an unknown key")
            self._fetch()
        finally:
            self._fetch_lock.release()
        key = self._cached(kid)
        if key is None:
            raise Unauthorized("token signed with an unknown key")
        return key

    def close(self) -> None:
        self._client.close()

    # --- internals ---------------------------------------------------------------------------------------------

    def _cached(self, kid: str | None) -> Any | None:
        keys = self._keys  # one read of the reference: a concurrent fetch swaps the whole dict
        if kid is None:
            # A token without kid is accepted only when the JWKS leaves no choice.
            return next(iter(keys.values())) if len(keys) == 1 else None
        return keys.get(kid)

    def _within(self, since: float | None, span: float, now: float) -> bool:
        return since is not None and now - since < span

    def _is_stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._max_age_s

    def _refresh_quietly(self) -> None:
        if self._within(self._attempted_at, self._failure_cooldown_s, self._clock()):
            return
        try:
            self._fetch()
        except AuthUnavailable as exc:
            log.warning("keeping cached Clerk keys; refresh failed: %s", exc.message)

    def _fetch(self) -> None:
        self._attempted_at = self._clock()
        self.fetches += 1
        try:
            document = self._download()
            keys = rs256_keys(document)
        except AuthUnavailable as exc:
            self._failure = exc.message
            raise
        except ValueError as exc:
            self._failure = f"{self.url} did not return a JWKS ({exc})"
            raise AuthUnavailable(f"Clerk's signing keys cannot be read: {self._failure}") from None
        if not keys:
            log.warning("the JWKS at %s holds no RS256 signing keys", self.url)
        self._keys = keys
        self._fetched_at = self._attempted_at
        self._failure = None

    def _download(self) -> Any:
        deadline = time.monotonic() + self._timeout_s
        try:
            with self._client.stream("GET", self.url, headers=self._headers) as response:
                if response.status_code in (401, 403):
                    raise AuthUnavailable(
                        f"Clerk refused the key request ({response.status_code}); check CLERK_SECRET_KEY"
                    )
                if response.status_code != 200:
                    raise AuthUnavailable(f"Clerk answered {response.status_code} for its signing keys")
                body = bytearray()
                # httpx's timeout is per read; the deadline bounds the whole download against a slow trickle.
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise AuthUnavailable("Clerk's JWKS answer is too large")
                    if time.monotonic() > deadline:
                        raise AuthUnavailable(f"Clerk's signing keys took longer than {self._timeout_s}s")
        except httpx.HTTPError as exc:
            raise AuthUnavailable(f"Clerk cannot be reached for its signing keys ({type(exc).__name__})") from None
        try:
            return json.loads(body)
        except ValueError:
            raise ValueError("the answer is not JSON") from None


# --- from settings -------------------------------------------------------------------------------------------------


def jwks_url_and_headers(settings: Settings) -> tuple[str, dict[str, str]]:
    """Where the JWKS comes from: CLERK_JWKS_URL, the Frontend API (publishable key), or the Backend API (secret)."""
    if settings.clerk_jwks_url:
        return settings.clerk_jwks_url, {}
    if settings.clerk_publishable_key:
        return f"https://{frontend_api_host(settings.clerk_publishable_key)}/.well-known/jwks.json", {}
    if settings.clerk_secret_key:
        secret = settings.clerk_secret_key.get_secret_value()
        return f"{settings.clerk_api_url.rstrip('/')}/v1/jwks", {"Authorization": f"Bearer {secret}"}
    raise ValueError("Clerk needs CLERK_JWT_KEY, CLERK_JWKS_URL, CLERK_PUBLISHABLE_KEY or CLERK_SECRET_KEY")


def clerk_key_source(settings: Settings) -> SigningKeySource:
    """The key source the CLERK_* settings select (PEM first: it needs no network)."""
    if settings.clerk_jwt_key:
        return PemKeySource(settings.clerk_jwt_key.get_secret_value())
    url, headers = jwks_url_and_headers(settings)
    return JwksKeySource(
        url, headers=headers, timeout_s=settings.clerk_timeout_s, cooldown_s=settings.clerk_jwks_cooldown_s
    )
