"""Clerk's key sources against a JWKS served over real HTTP on 127.0.0.1 (tests/support/jwks_server.py), and tokens
run through the real JwtVerifier with them."""

from __future__ import annotations

import base64
import threading

import pytest

from robotrain.auth.clerk import (
    JwksKeySource,
    PemKeySource,
    clerk_issuer,
    clerk_key_source,
    frontend_api_host,
    jwks_url_and_headers,
    normalize_pem,
    rs256_keys,
)
from robotrain.auth.verifier import JwtVerifier
from robotrain.errors import AuthUnavailable, Unauthorized
from robotrain.settings import Settings
from robotrain.wiring import build_verifier
from tests.support.clocks import ManualClock
from tests.support.jwks_server import JwksServer, ec_key, rsa_key
from tests.support.moto import free_port

ISSUER = "https://clerk.example.test"


def _settings(**env: str) -> Settings:
    return Settings(_env_file=None, **env)


def _publishable_key(host: str, live: bool = False) -> str:
    return ("pk_live_" if live else "pk_test_") + base64.b64encode(f"{host}$".encode()).decode()


@pytest.fixture
def jwks() -> JwksServer:
    with JwksServer() as server:
        yield server


# --- publishable key and issuer ----------------------------------------------------------------------------------


@pytest.mark.parametrize("live", [False, True])
def test_the_frontend_api_host_is_decoded_from_the_publishable_key(live: bool):
    assert frontend_api_host(_publishable_key("clerk.example.com", live)) == "clerk.example.com"


def test_a_publishable_key_without_base64_padding_still_decodes():
    key = "pk_test_" + base64.b64encode(b"happy-otter-12.clerk.accounts.dev$").decode().rstrip("=")
    assert frontend_api_host(key) == "happy-otter-12.clerk.accounts.dev"


@pytest.mark.parametrize(
    "key",
    [
        "sk_test_abc",
        "pk_test_%%%",
        "pk_test_" + base64.b64encode(b"clerk.example.com").decode(),  # no trailing $
        "pk_test_" + base64.b64encode(b"evil.com/path?x=$").decode(),  # not a host
    ],
)
def test_a_malformed_publishable_key_is_a_clear_configuration_error(key: str):
    with pytest.raises(ValueError, match="CLERK_PUBLISHABLE_KEY"):
        frontend_api_host(key)


def test_the_issuer_is_derived_from_the_publishable_key_unless_set():
    derived = _settings(CLERK_PUBLISHABLE_KEY=_publishable_key("clerk.example.com"))
    explicit = _settings(CLERK_PUBLISHABLE_KEY=_publishable_key("clerk.example.com"), CLERK_ISSUER="https://x.test/")

    assert clerk_issuer(derived) == "https://clerk.example.com"
    assert clerk_issuer(explicit) == "https://x.test"
    assert clerk_issuer(_settings(CLERK_JWKS_URL="https://a.test/jwks")) is None


def test_the_jwks_location_follows_the_settings():
    assert jwks_url_and_headers(_settings(CLERK_JWKS_URL="https://a.test/k.json")) == ("https://a.test/k.json", {})
    assert jwks_url_and_headers(_settings(CLERK_PUBLISHABLE_KEY=_publishable_key("clerk.example.com"))) == (
        "https://clerk.example.com/.well-known/jwks.json",
        {},
    )
    assert jwks_url_and_headers(_settings(CLERK_SECRET_KEY="sk_test_1", CLERK_API_URL="http://127.0.0.1:9/")) == (
        "http://127.0.0.1:9/v1/jwks",
        {"Authorization": "Bearer sk_test_1"},
    )


# --- PEM ------------------------------------------------------------------------------------------------------------


def test_a_pem_with_newlines_verifies_tokens_without_network():
    key = rsa_key()
    verifier = JwtVerifier(PemKeySource(key.public_pem), issuer=ISSUER)

    assert verifier.verify(key.mint(iss=ISSUER, sub="user_pem")) == "user_pem"


@pytest.mark.parametrize(
    "flatten",
    [
        lambda pem: pem.replace("\n", ""),  # as Clerk's dashboard copies it
        lambda pem: pem.replace("\n", "\\n"),  # as env files often hold it
        lambda pem: pem.replace("\n", " "),
    ],
)
def test_a_pem_without_newlines_is_accepted(flatten):
    key = rsa_key()
    flat = flatten(key.public_pem)
    assert "\n" not in flat

    assert normalize_pem(flat) == key.public_pem
    assert JwtVerifier(PemKeySource(flat), issuer=ISSUER).verify(key.mint(iss=ISSUER)) == "user_test"


def test_a_token_from_another_key_is_refused_with_a_pem():
    verifier = JwtVerifier(PemKeySource(rsa_key().public_pem), issuer=ISSUER)

    with pytest.raises(Unauthorized):
        verifier.verify(rsa_key().mint(iss=ISSUER))


@pytest.mark.parametrize("text", ["", "not a key", "-----BEGIN PUBLIC KEY-----AAAA-----END PUBLIC KEY-----"])
def test_a_bad_pem_is_a_clear_configuration_error(text: str):
    with pytest.raises(ValueError, match="CLERK_JWT_KEY"):
        PemKeySource(text)


def test_a_non_rsa_pem_is_refused():
    with pytest.raises(ValueError, match="RSA"):
        PemKeySource(ec_key().public_pem)


# --- JWKS: caching, cooldown, rotation ----------------------------------------------------------------------------


def test_keys_are_fetched_once_and_then_served_from_the_cache(jwks: JwksServer):
    key = rsa_key()
    jwks.publish(key)
    source = JwksKeySource(jwks.frontend_url, timeout_s=2, cooldown_s=30)
    verifier = JwtVerifier(source, issuer=ISSUER)

    for _ in range(5):
        assert verifier.verify(key.mint(iss=ISSUER, sub="user_a")) == "user_a"
    assert jwks.fetches == 1


def test_an_unknown_kid_refetches_once_and_is_then_refused_without_fetching_within_the_cooldown(jwks: JwksServer):
    clock = ManualClock()
    jwks.publish(rsa_key())
    source = JwksKeySource(jwks.frontend_url, timeout_s=2, cooldown_s=30, clock=clock)
    source.key_for(jwks.jwks[0]["kid"])
    assert jwks.fetches == 1

    clock.advance(31)
    with pytest.raises(Unauthorized, match="unknown key"):
        source.key_for("ins_bogus")
    assert jwks.fetches == 2  # one refetch for the unknown kid ...

    for bogus in ("ins_bogus", "ins_other", "ins_third"):
        clock.advance(5)
        with pytest.raises(Unauthorized):
            source.key_for(bogus)
    assert jwks.fetches == 2  # ... and none more within the cooldown, whatever the kid


def test_a_rotated_key_is_accepted_after_the_cooldown_without_a_restart(jwks: JwksServer):
    clock = ManualClock()
    old, new = rsa_key(), rsa_key()
    jwks.publish(old)
    verifier = JwtVerifier(JwksKeySource(jwks.frontend_url, timeout_s=2, cooldown_s=30, clock=clock), issuer=ISSUER)
    assert verifier.verify(old.mint(iss=ISSUER)) == "user_test"

    jwks.publish(old, new)  # Clerk publishes the new key
    clock.advance(10)
    with pytest.raises(Unauthorized):
        verifier.verify(new.mint(iss=ISSUER))  # within the cooldown: refused, no fetch
    assert jwks.fetches == 1

    clock.advance(21)
    assert verifier.verify(new.mint(iss=ISSUER, sub="user_new")) == "user_new"
    assert verifier.verify(old.mint(iss=ISSUER, sub="user_old")) == "user_old"
    assert jwks.fetches == 2


def test_a_key_removed_from_the_jwks_stops_verifying_after_the_cache_ages(jwks: JwksServer):
    clock = ManualClock()
    old, new = rsa_key(), rsa_key()
    jwks.publish(old, new)
    source = JwksKeySource(jwks.frontend_url, timeout_s=2, cooldown_s=30, max_age_s=300, clock=clock)
    verifier = JwtVerifier(source, issuer=ISSUER)
    assert verifier.verify(old.mint(iss=ISSUER)) == "user_test"

    jwks.publish(new)  # the old key is revoked
    clock.advance(301)
    verifier.verify(new.mint(iss=ISSUER))  # the aged cache is refreshed on use
    with pytest.raises(Unauthorized):
        verifier.verify(old.mint(iss=ISSUER))


def test_cached_keys_keep_working_when_a_refresh_fails(jwks: JwksServer):
    clock = ManualClock()
    key = rsa_key()
    jwks.publish(key)
    verifier = JwtVerifier(JwksKeySource(jwks.frontend_url, timeout_s=2, max_age_s=300, clock=clock), issuer=ISSUER)
    verifier.verify(key.mint(iss=ISSUER))

    jwks.status = 500
    clock.advance(301)
    assert verifier.verify(key.mint(iss=ISSUER, sub="user_still")) == "user_still"
    assert jwks.fetches == 2


def test_concurrent_requests_for_an_unknown_kid_share_one_fetch(jwks: JwksServer):
    key = rsa_key()
    jwks.publish(key)
    jwks.delay_s = 0.3  # long enough that every thread arrives while the first fetch is in flight
    source = JwksKeySource(jwks.frontend_url, timeout_s=3, cooldown_s=30)
    results: list[object] = []
    start = threading.Barrier(8)

    def fetch() -> None:
        start.wait()
        results.append(source.key_for(key.kid))

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert jwks.fetches == 1
    assert len(results) == 8
    assert all(r is results[0] for r in results)


def test_only_rs256_signing_keys_are_kept_from_the_jwks(jwks: JwksServer):
    rs, es = rsa_key(), ec_key()
    rs384 = rsa_key()
    rs384.jwk["alg"] = "RS384"
    encryption = rsa_key()
    encryption.jwk["use"] = "enc"
    oct_key = {"kty": "oct", "kid": "hmac", "k": base64.urlsafe_b64encode(b"secret").decode(), "alg": "HS256"}
    jwks.publish(rs, es, rs384, encryption, oct_key)
    source = JwksKeySource(jwks.frontend_url, timeout_s=2, cooldown_s=30)

    assert source.key_for(rs.kid) is not None
    for kid in (es.kid, rs384.kid, encryption.kid, "hmac"):
        with pytest.raises(Unauthorized):
            source.key_for(kid)
    assert set(rs256_keys({"keys": jwks.jwks})) == {rs.kid}


def test_an_rsa_jwk_without_alg_counts_as_rs256():
    key = rsa_key()
    del key.jwk["alg"]
    assert set(rs256_keys({"keys": [key.jwk]})) == {key.kid}


def test_a_token_without_kid_is_accepted_only_when_the_jwks_has_a_single_key(jwks: JwksServer):
    one, two = rsa_key(), rsa_key()
    jwks.publish(one)
    assert JwksKeySource(jwks.frontend_url, timeout_s=2).key_for(None) is not None

    jwks.publish(one, two)
    with pytest.raises(Unauthorized):
        JwksKeySource(jwks.frontend_url, timeout_s=2).key_for(None)


# --- JWKS: Clerk unreachable or misbehaving ------------------------------------------------------------------------


def test_an_unreachable_jwks_is_auth_unavailable():
    source = JwksKeySource(f"http://127.0.0.1:{free_port()}/.well-known/jwks.json", timeout_s=1)

    with pytest.raises(AuthUnavailable, match="cannot be reached") as raised:
        source.key_for("ins_any")
    assert raised.value.status_code == 503


def test_a_jwks_that_does_not_answer_in_time_is_given_up_on(jwks: JwksServer):
    key = rsa_key()
    jwks.publish(key)
    jwks.delay_s = 60  # the answer (with the key) would come, but long after the timeout
    source = JwksKeySource(jwks.frontend_url, timeout_s=0.5)

    # Given up on, not waited for: waiting would have found the key and answered with it.
    with pytest.raises(AuthUnavailable, match="Timeout"):
        source.key_for(key.kid)


def test_after_a_failed_fetch_requests_fail_at_once_then_recover(jwks: JwksServer):
    clock = ManualClock()
    key = rsa_key()
    jwks.publish(key)
    jwks.status = 503
    source = JwksKeySource(jwks.frontend_url, timeout_s=2, failure_cooldown_s=2, cooldown_s=30, clock=clock)

    with pytest.raises(AuthUnavailable, match="503"):
        source.key_for(key.kid)
    with pytest.raises(AuthUnavailable):
        source.key_for(key.kid)  # within the failure cooldown: no new fetch
    assert jwks.fetches == 1

    jwks.status = 200
    clock.advance(2)
    assert source.key_for(key.kid) is not None  # a failure does not start the 30 s unknown-kid cooldown
    assert jwks.fetches == 2


@pytest.mark.parametrize("body", [b"<html>busy</html>", b'{"no": "keys"}', b"[]"])
def test_an_answer_that_is_not_a_jwks_is_auth_unavailable(jwks: JwksServer, body: bytes):
    jwks.body = body
    with pytest.raises(AuthUnavailable, match="JWKS|JSON"):
        JwksKeySource(jwks.frontend_url, timeout_s=2).key_for("ins_any")


# --- from settings --------------------------------------------------------------------------------------------------


def test_the_backend_api_jwks_is_fetched_with_the_secret_key(jwks: JwksServer):
    key = rsa_key()
    jwks.publish(key)
    jwks.secret = "sk_test_right"
    source = clerk_key_source(_settings(CLERK_SECRET_KEY="sk_test_right", CLERK_API_URL=jwks.base_url))

    verifier = JwtVerifier(source, issuer=ISSUER)
    assert verifier.verify(key.mint(iss=ISSUER, sub="user_backend")) == "user_backend"
    assert jwks.authorizations == ["Bearer sk_test_right"]


def test_a_wrong_secret_key_is_reported_as_a_clerk_configuration_problem(jwks: JwksServer):
    jwks.publish(rsa_key())
    jwks.secret = "sk_test_right"
    source = clerk_key_source(_settings(CLERK_SECRET_KEY="sk_test_wrong", CLERK_API_URL=jwks.base_url))

    with pytest.raises(AuthUnavailable, match="CLERK_SECRET_KEY"):
        source.key_for("ins_any")


def test_the_pem_wins_over_network_sources_in_the_settings():
    key = rsa_key()
    settings = _settings(CLERK_JWT_KEY=key.public_pem.replace("\n", ""), CLERK_JWKS_URL="http://127.0.0.1:9/jwks")
    assert isinstance(clerk_key_source(settings), PemKeySource)


def test_settings_use_the_clerk_timeout_and_cooldown(jwks: JwksServer):
    clock_free_source = clerk_key_source(
        _settings(CLERK_JWKS_URL=jwks.frontend_url, CLERK_TIMEOUT_S="0.7", CLERK_JWKS_COOLDOWN_S="0")
    )
    old, new = rsa_key(), rsa_key()
    jwks.publish(old)
    clock_free_source.key_for(old.kid)
    jwks.publish(new)
    assert clock_free_source.key_for(new.kid) is not None  # cooldown 0: the unknown kid refetches at once
    assert jwks.fetches == 2


def test_build_verifier_with_a_jwks_url_verifies_clerk_tokens_and_refuses_others(jwks: JwksServer, tmp_path):
    key = rsa_key()
    jwks.publish(key)
    settings = _settings(
        CLERK_JWKS_URL=jwks.frontend_url,
        CLERK_ISSUER=ISSUER,
        CLERK_AUTHORIZED_PARTIES="https://app.example.test",
        ROBOTRAIN_DATA_DIR=str(tmp_path),
    )
    verifier = build_verifier(settings)

    assert verifier.verify(key.mint(iss=ISSUER, azp="https://app.example.test", sub="user_ok")) == "user_ok"
    for bad in (
        key.mint(iss="https://evil.test"),
        key.mint(iss=ISSUER, azp="https://evil.test"),
        rsa_key(kid=key.kid).mint(iss=ISSUER),  # right kid, another key
    ):
        with pytest.raises(Unauthorized):
            verifier.verify(bad)
