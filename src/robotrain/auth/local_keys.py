"""The embedded key source: an RS256 key pair minted into `<data_dir>/keys/` on first use.

`robotrain token` signs with it and the server verifies with it through the same JwtVerifier that verifies Clerk
tokens; the key id is the key's RFC 7638 thumbprint, so it is stable across restarts.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from robotrain.auth.verifier import ALGORITHM
from robotrain.errors import Unauthorized

LOCAL_ISSUER = "robotrain-local"
PRIVATE_KEY_FILE = "local_rs256.pem"
DEFAULT_TTL_S = 24 * 3600


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638: SHA-256 over the canonical JSON of the required JWK members, base64url."""
    numbers = public_key.public_numbers()
    canonical = json.dumps(
        {"e": _b64url(_int_bytes(numbers.e)), "kty": "RSA", "n": _b64url(_int_bytes(numbers.n))},
        separators=(",", ":"),
        sort_keys=True,
    )
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


class LocalKeys:
    """A SigningKeySource over one locally stored key pair, which it can also sign with."""

    def __init__(self, data_dir: Path):
        self._dir = Path(data_dir) / "keys"
        self._lock = threading.Lock()
        self._private: rsa.RSAPrivateKey | None = None
        self._kid: str | None = None

    @property
    def kid(self) -> str:
        self._load()
        assert self._kid is not None
        return self._kid

    def key_for(self, kid: str | None) -> Any:
        private = self._load()
        if kid is not None and kid != self._kid:
            raise Unauthorized("token signed by an unknown key")
        return private.public_key()

    def mint(self, user_id: str, ttl_s: int = DEFAULT_TTL_S) -> str:
        if not user_id:
            raise ValueError("user_id must not be empty")
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        private = self._load()
        now = int(time.time())
        claims = {"sub": user_id, "iss": LOCAL_ISSUER, "iat": now, "nbf": now, "exp": now + int(ttl_s)}
        return jwt.encode(claims, private, algorithm=ALGORITHM, headers={"kid": self._kid})

    def _load(self) -> rsa.RSAPrivateKey:
        if self._private is not None:
            return self._private
        with self._lock:
            if self._private is None:
                private = self._read_or_create()
                self._kid = thumbprint(private.public_key())
                self._private = private
        return self._private

    def _read_or_create(self) -> rsa.RSAPrivateKey:
        path = self._dir / PRIVATE_KEY_FILE
        if not path.exists():
            self._create(path)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise RuntimeError(f"{path} does not hold an RSA private key")
        return key

    def _create(self, path: Path) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        # Written to a private temp file and hard-linked into place: the link fails if another process (the server
        # and `robotrain token` may start together) won the race, and then its key is the one everybody uses.
        tmp = self._dir / f".{PRIVATE_KEY_FILE}.{os.getpid()}.{threading.get_ident()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
