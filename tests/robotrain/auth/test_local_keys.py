"""Local keys: minted once into the data dir, private, stable, and verified by the production JwtVerifier."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from robotrain.auth.local_keys import LOCAL_ISSUER, PRIVATE_KEY_FILE, LocalKeys
from robotrain.errors import Unauthorized
from robotrain.settings import Settings
from robotrain.wiring import build_verifier


def test_first_use_writes_a_private_key_readable_only_by_its_owner(tmp_path: Path) -> None:
    LocalKeys(tmp_path).mint("alice")
    key_file = tmp_path / "keys" / PRIVATE_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_kid_is_stable_across_instances_on_the_same_data_dir(tmp_path: Path) -> None:
    first = LocalKeys(tmp_path)
    token = first.mint("alice")
    second = LocalKeys(tmp_path)
    assert second.kid == first.kid
    assert jwt.get_unverified_header(token)["kid"] == first.kid


def test_minted_token_is_verified_by_the_built_verifier(tmp_path: Path) -> None:
    token = LocalKeys(tmp_path).mint("alice", ttl_s=60)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == LOCAL_ISSUER
    assert claims["exp"] - claims["iat"] == 60
    assert build_verifier(Settings(data_dir=tmp_path)).verify(token) == "alice"


def test_token_from_another_data_dir_is_refused(tmp_path: Path) -> None:
    token = LocalKeys(tmp_path / "a").mint("alice")
    with pytest.raises(Unauthorized):
        build_verifier(Settings(data_dir=tmp_path / "b")).verify(token)


def test_mint_refuses_an_empty_user(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LocalKeys(tmp_path).mint("")


def test_with_clerk_configured_local_tokens_are_refused_and_clerk_tokens_accepted(tmp_path: Path) -> None:
    clerk_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = clerk_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings = Settings(
        data_dir=tmp_path,
        clerk_jwt_key=pem.decode(),
        clerk_issuer="https://clerk.example.test",
        clerk_authorized_parties="https://app.example.test",
    )
    verifier = build_verifier(settings)
    now = int(time.time())
    claims = {"sub": "user_2x", "iss": "https://clerk.example.test", "iat": now, "nbf": now, "exp": now + 60}
    assert verifier.verify(jwt.encode(claims, clerk_key, algorithm="RS256", headers={"kid": "ins_1"})) == "user_2x"
    with pytest.raises(Unauthorized):
        verifier.verify(jwt.encode({**claims, "azp": "https://evil.test"}, clerk_key, algorithm="RS256"))
    with pytest.raises(Unauthorized):
        verifier.verify(LocalKeys(tmp_path).mint("alice"))
