"""Forged, stale and misdirected tokens against a real `robotrain serve` configured for Clerk with a JWKS on
127.0.0.1 (tests/support/jwks_server.py standing in for Clerk's Frontend API): every one is 401 in the one error
shape, the valid token is 200, a rotated key is picked up after the cooldown without a restart, and an unreachable
Clerk is a prompt 503 that never blocks the server's event loop."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from robotrain.auth.local_keys import LocalKeys
from tests.security.server import free_port, serve
from tests.support.jwks_server import JwksServer, SigningKey, ec_key, rsa_key

ISSUER = "https://clerk.attack.example"
PARTY = "https://app.attack.example"
COOLDOWN_S = 2.0


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unsigned(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(payload).encode()), b64url(signature)])


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"sub": "user_alice", "sid": "sess_1", "iss": ISSUER, "azp": PARTY, "iat": now, "nbf": now, "exp": now + 60}
    return {k: v for k, v in (base | overrides).items() if v is not None}


class Keys:
    def __init__(self) -> None:
        self.signing = rsa_key()
        self.impostor = rsa_key(kid=self.signing.kid)  # another key pair that claims the real kid
        self.stranger = rsa_key()  # never published

    def valid(self, **overrides: Any) -> str:
        """Signed by the published key with exactly these claims (an override of None leaves the claim out)."""
        return jwt.encode(claims(**overrides), self.signing.private_key, "RS256", headers={"kid": self.signing.kid})


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def jwks(keys: Keys) -> Iterator[JwksServer]:
    with JwksServer() as server:
        server.publish(keys.signing)
        yield server


@pytest.fixture(scope="module")
def server(jwks: JwksServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data_dir = tmp_path_factory.mktemp("clerk-server")
    env = {
        "CLERK_JWKS_URL": jwks.frontend_url,
        "CLERK_ISSUER": ISSUER,
        "CLERK_AUTHORIZED_PARTIES": f"{PARTY},https://other.attack.example",
        "CLERK_JWKS_COOLDOWN_S": str(COOLDOWN_S),
        "CLERK_TIMEOUT_S": "2",
    }
    with serve(data_dir, env) as url:
        yield url, data_dir


@pytest.fixture(scope="module")
def http(server: tuple[str, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[0], timeout=10) as client:
        yield client


def hs256_with_public_key(keys: Keys) -> str:
    header = {"alg": "HS256", "typ": "JWT", "kid": keys.signing.kid}
    signing_input = ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(claims()).encode())])
    mac = hmac.new(keys.signing.public_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def tampered(keys: Keys) -> str:
    header, _, signature = keys.valid().split(".")
    forged = b64url(json.dumps(claims(sub="user_bob")).encode())
    return f"{header}.{forged}.{signature}"


def ec_signed(keys: Keys) -> str:
    return ec_key().mint(claims())


ATTACKS: dict[str, Callable[[Keys], str]] = {
    "expired": lambda k: k.valid(iat=int(time.time()) - 600, nbf=int(time.time()) - 600, exp=int(time.time()) - 60),
    "not yet valid (nbf)": lambda k: k.valid(nbf=int(time.time()) + 120, exp=int(time.time()) + 300),
    "issued in the future (iat)": lambda k: k.valid(iat=int(time.time()) + 120, exp=int(time.time()) + 300),
    "no exp": lambda k: k.valid(exp=None),
    "wrong issuer": lambda k: k.valid(iss="https://clerk.evil.example"),
    "no issuer": lambda k: k.valid(iss=None),
    "wrong azp": lambda k: k.valid(azp="https://evil.example"),
    "alg none": lambda k: unsigned({"alg": "none", "typ": "JWT", "kid": k.signing.kid}, claims()),
    "alg None with a signature": lambda k: unsigned({"alg": "None", "kid": k.signing.kid}, claims(), b"sig"),
    "HS256 signed with the public key": hs256_with_public_key,
    "ES256 from an unknown key": ec_signed,
    "unknown kid": lambda k: k.stranger.mint(claims()),
    "tampered payload": tampered,
    "another key with the same kid": lambda k: k.impostor.mint(claims()),
    "no sub": lambda k: k.valid(sub=None),
    "no iat": lambda k: k.valid(iat=None),
    "empty sub": lambda k: k.valid(sub=""),
    "garbage": lambda k: "not-a-jwt",
    "three garbage segments": lambda k: "a.b.c",
    "header that is not JSON": lambda k: b64url(b"{nope") + ".e30.",
}


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == "unauthorized"
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_the_valid_token_is_accepted(http: httpx.Client, keys: Keys) -> None:
    response = http.get("/jobs", headers={"Authorization": f"Bearer {keys.valid()}"})
    assert response.status_code == 200, response.text
    # A missing azp is accepted (Clerk's manual-verification docs), as is the other authorized party.
    assert http.get("/jobs", headers={"Authorization": f"Bearer {keys.valid(azp=None)}"}).status_code == 200
    other_party = keys.valid(azp="https://other.attack.example")
    assert http.get("/jobs", headers={"Authorization": f"Bearer {other_party}"}).status_code == 200


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_every_attack_token_is_401_as_bearer_and_as_session_cookie(http: httpx.Client, keys: Keys, attack: str) -> None:
    token = ATTACKS[attack](keys)
    assert_unauthorized(http.get("/jobs", headers={"Authorization": f"Bearer {token}"}))
    assert_unauthorized(http.post("/jobs", json={}, headers={"Authorization": f"Bearer {token}"}))
    http.cookies.clear()
    assert_unauthorized(http.get("/jobs", headers={"Cookie": f"__session={token}"}))


def raw_get(base_url: str, path: str, header_line: bytes) -> httpx.Response:
    """A GET written byte by byte: httpx refuses header values with trailing spaces, which attackers need not."""
    host, port = httpx.URL(base_url).host, httpx.URL(base_url).port
    request = b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + header_line + b"\r\nConnection: close\r\n\r\n"
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in header_lines]
    return httpx.Response(int(status_line.split()[1]), headers=headers, content=body)


@pytest.mark.parametrize(
    "header_line",
    [
        b"Authorization: Bearer",
        b"Authorization: Bearer ",
        b"Authorization: Bearer    ",
        b"Authorization: ",
        b"Authorization: Basic dXNlcjpwYXNz",
        b"Authorization: bearer-ish token",
        b"Authorization: Token abc",
    ],
)
def test_an_empty_or_non_bearer_authorization_is_401(server: tuple[str, Path], header_line: bytes) -> None:
    assert_unauthorized(raw_get(server[0], "/jobs", header_line))


def test_no_credentials_and_an_empty_session_cookie_are_401(http: httpx.Client) -> None:
    assert_unauthorized(http.get("/jobs"))
    assert_unauthorized(http.get("/jobs", headers={"Cookie": "__session="}))


def test_the_session_cookie_with_the_valid_token_is_accepted(http: httpx.Client, keys: Keys) -> None:
    assert http.get("/jobs", headers={"Cookie": f"__session={keys.valid()}"}).status_code == 200


def test_a_bad_bearer_is_not_rescued_by_a_good_cookie(http: httpx.Client, keys: Keys) -> None:
    headers = {"Authorization": "Bearer not-a-jwt", "Cookie": f"__session={keys.valid()}"}
    assert_unauthorized(http.get("/jobs", headers=headers))


def test_with_clerk_configured_a_locally_minted_token_is_refused(http: httpx.Client, server: tuple[str, Path]) -> None:
    local = LocalKeys(server[1]).mint("user_alice")
    assert_unauthorized(http.get("/jobs", headers={"Authorization": f"Bearer {local}"}))


def test_a_rotated_key_is_accepted_after_the_cooldown_and_unknown_kids_do_not_hammer_the_jwks(
    http: httpx.Client, jwks: JwksServer, keys: Keys
) -> None:
    def status(key: SigningKey) -> int:
        return http.get("/jobs", headers={"Authorization": f"Bearer {key.mint(claims())}"}).status_code

    time.sleep(COOLDOWN_S + 0.2)  # out of any cooldown earlier tests started
    before = jwks.fetches
    assert status(rsa_key()) == 401  # an unknown kid: one refetch
    assert jwks.fetches == before + 1
    rotated = rsa_key()
    jwks.publish(keys.signing, rotated)
    started = time.monotonic()
    refused = [status(rotated)] + [status(rsa_key(kid=f"ins_bogus_{i}")) for i in range(10)]
    assert time.monotonic() - started < COOLDOWN_S, "the requests did not fit in the cooldown; the check is void"
    assert refused == [401] * 11
    assert jwks.fetches == before + 1, "unknown kids within the cooldown fetched the JWKS again"

    time.sleep(COOLDOWN_S + 0.2)
    assert status(rotated) == 200  # picked up without a restart
    assert jwks.fetches == before + 2
    assert status(rotated) == 200 and status(keys.signing) == 200
    assert jwks.fetches == before + 2  # known kids come from the cache


# --- Clerk unreachable ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def silent_endpoint() -> Iterator[str]:
    """A port that accepts TCP connections (the kernel's backlog) but never answers a byte."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/.well-known/jwks.json"


@pytest.fixture(scope="module", params=["closed port", "never answers"])
def unreachable_server(
    request: pytest.FixtureRequest, silent_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    url = f"http://127.0.0.1:{free_port()}/.well-known/jwks.json" if request.param == "closed port" else silent_endpoint
    env = {"CLERK_JWKS_URL": url, "CLERK_ISSUER": ISSUER, "CLERK_TIMEOUT_S": "1"}
    with serve(tmp_path_factory.mktemp("unreachable"), env) as base_url:
        yield base_url


def test_an_unreachable_clerk_is_a_prompt_503_and_the_event_loop_keeps_serving(
    unreachable_server: str, keys: Keys
) -> None:
    token = keys.valid()
    results: list[tuple[int, str, float]] = []

    def call() -> None:
        started = time.monotonic()
        with httpx.Client(timeout=15) as client:
            response = client.get(f"{unreachable_server}/jobs", headers={"Authorization": f"Bearer {token}"})
        results.append((response.status_code, response.json()["error"]["code"], time.monotonic() - started))

    callers = [threading.Thread(target=call) for _ in range(4)]
    for caller in callers:
        caller.start()
    # While those wait on Clerk, the server still answers: verification runs in the threadpool, not the loop.
    with httpx.Client(timeout=5) as client:
        for _ in range(5):
            started = time.monotonic()
            assert client.get(f"{unreachable_server}/healthz").status_code == 200
            assert time.monotonic() - started < 0.5
            time.sleep(0.05)
    for caller in callers:
        caller.join(timeout=20)
    assert [(status, code) for status, code, _ in results] == [(503, "auth_unavailable")] * 4
    assert max(elapsed for _, _, elapsed in results) < 5, results
    with httpx.Client(timeout=15) as client:
        response = client.get(f"{unreachable_server}/jobs", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503
    assert "Clerk" in response.json()["error"]["message"]
