"""The JWT verifier against tokens signed by real RSA keys: every attack is refused with Unauthorized."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from robotrain.auth.verifier import JwtVerifier
from robotrain.errors import AuthUnavailable, Unauthorized

ISSUER = "https://clerk.example.test"
KID = "test-key"


class StaticKeys:
    """A key source holding one public key under one kid (the production sources are LocalKeys and Clerk's)."""

    def __init__(self, public_key: Any, kid: str = KID):
        self.public_key = public_key
        self.kid = kid

    def key_for(self, kid: str | None) -> Any:
        if kid != self.kid:
            raise Unauthorized("unknown key")
        return self.public_key


class UnreachableKeys:
    def key_for(self, kid: str | None) -> Any:
        raise AuthUnavailable("identity provider unreachable")


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def verifier(private_key: rsa.RSAPrivateKey) -> JwtVerifier:
    return JwtVerifier(StaticKeys(private_key.public_key()), issuer=ISSUER, authorized_parties=["https://app.test"])


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"sub": "user_alice", "iss": ISSUER, "iat": now, "nbf": now, "exp": now + 60, "azp": "https://app.test"}
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def sign(key: rsa.RSAPrivateKey, payload: dict[str, Any], kid: str = KID) -> str:
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_valid_token_returns_the_subject(verifier: JwtVerifier, private_key: rsa.RSAPrivateKey) -> None:
    assert verifier.verify(sign(private_key, claims())) == "user_alice"


def test_token_expired_within_leeway_is_accepted(private_key: rsa.RSAPrivateKey) -> None:
    # PyJWT reads the wall clock: a wide leeway keeps "within" true however long this test is held up
    lenient = JwtVerifier(StaticKeys(private_key.public_key()), issuer=ISSUER, leeway_s=60)
    now = int(time.time())
    assert lenient.verify(sign(private_key, claims(iat=now - 90, nbf=now - 90, exp=now - 20))) == "user_alice"


def test_missing_azp_is_accepted(verifier: JwtVerifier, private_key: rsa.RSAPrivateKey) -> None:
    payload = claims()
    del payload["azp"]
    assert verifier.verify(sign(private_key, payload)) == "user_alice"


def test_missing_nbf_is_accepted(verifier: JwtVerifier, private_key: rsa.RSAPrivateKey) -> None:
    payload = claims()
    del payload["nbf"]
    assert verifier.verify(sign(private_key, payload)) == "user_alice"


def _bad_tokens(key: rsa.RSAPrivateKey, other: rsa.RSAPrivateKey) -> dict[str, str]:
    now = int(time.time())
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    valid = sign(key, claims())
    head, _, signature = valid.split(".")
    tampered = ".".join([head, b64(claims(sub="user_mallory")), signature])
    no_sub = claims()
    del no_sub["sub"]
    no_exp = claims()
    del no_exp["exp"]
    no_iat = claims()
    del no_iat["iat"]
    no_iss = claims()
    del no_iss["iss"]
    return {
        "expired": sign(key, claims(iat=now - 120, nbf=now - 120, exp=now - 30)),
        "nbf in the future": sign(key, claims(nbf=now + 60, exp=now + 120)),
        "iat in the future": sign(key, claims(iat=now + 60, exp=now + 120)),
        "wrong issuer": sign(key, claims(iss="https://evil.example.test")),
        "missing issuer": sign(key, no_iss),
        "wrong azp": sign(key, claims(azp="https://evil.test")),
        "alg none": b64({"alg": "none", "typ": "JWT", "kid": KID}) + "." + b64(claims()) + ".",
        "HS256 with the public key as secret": _manual_hs256(public_pem, claims()),
        "tampered payload": tampered,
        "signed by another key": sign(other, claims()),
        "unknown kid": sign(key, claims(), kid="someone-else"),
        "no sub": sign(key, no_sub),
        "empty sub": sign(key, claims(sub="")),
        "no exp": sign(key, no_exp),
        "no iat": sign(key, no_iat),
        "garbage": "not-a-jwt",
        "three garbage parts": "a.b.c",
        "empty": "",
        "blank": "   ",
    }


def _manual_hs256(secret: bytes, payload: dict[str, Any]) -> str:
    # Built by hand: PyJWT refuses to HMAC-sign with a PEM key (a guard against exactly this attack).
    signing_input = b64({"alg": "HS256", "typ": "JWT", "kid": KID}) + "." + b64(payload)
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


BAD_TOKEN_CASES = [
    "expired",
    "nbf in the future",
    "iat in the future",
    "wrong issuer",
    "missing issuer",
    "wrong azp",
    "alg none",
    "HS256 with the public key as secret",
    "tampered payload",
    "signed by another key",
    "unknown kid",
    "no sub",
    "empty sub",
    "no exp",
    "no iat",
    "garbage",
    "three garbage parts",
    "empty",
    "blank",
]


@pytest.mark.parametrize("case", BAD_TOKEN_CASES)
def test_bad_token_is_unauthorized(
    case: str, verifier: JwtVerifier, private_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
) -> None:
    token = _bad_tokens(private_key, other_key)[case]
    with pytest.raises(Unauthorized):
        verifier.verify(token)


def test_without_configured_issuer_any_issuer_is_accepted(private_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(StaticKeys(private_key.public_key()), issuer=None)
    assert verifier.verify(sign(private_key, claims(iss="https://whoever.test"))) == "user_alice"


def test_without_authorized_parties_any_azp_is_accepted(private_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(StaticKeys(private_key.public_key()), issuer=ISSUER)
    assert verifier.verify(sign(private_key, claims(azp="https://anything.test"))) == "user_alice"


def test_unreachable_key_source_surfaces_as_auth_unavailable(private_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(UnreachableKeys(), issuer=ISSUER)
    with pytest.raises(AuthUnavailable):
        verifier.verify(sign(private_key, claims()))


def test_alg_none_never_reaches_the_key_source(private_key: rsa.RSAPrivateKey) -> None:
    # An unreachable key source would raise AuthUnavailable (503) if consulted; a forged header must be a 401.
    verifier = JwtVerifier(UnreachableKeys(), issuer=ISSUER)
    with pytest.raises(Unauthorized):
        verifier.verify(b64({"alg": "none", "kid": KID}) + "." + b64(claims()) + ".")
