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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from robotrain.adapters.sqlite_store import SqliteJobStore
from robotrain.auth.local_keys import LocalKeys
from robotrain.jobs.models import JobStatus
from tests.robotrain.adapters.store_contract import make_job
from tests.security.server import free_port, serve
from tests.support.jwks_server import JwksServer, ec_key, rsa_key

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


def test_the_session_cookie_with_the_valid_token_signs_in_its_subject(
    http: httpx.Client, keys: Keys, server: tuple[str, Path]
) -> None:
    # a finished job of user_alice, written straight into the server's store (nothing dispatches a finished job)
    store = SqliteJobStore(server[1] / "robotrain.sqlite3")
    job = store.create(make_job("user_alice", status=JobStatus.SUCCEEDED))
    store.close()

    def listed(token: str) -> list[str]:
        response = http.get("/jobs", headers={"Cookie": f"__session={token}"})
        assert response.status_code == 200, response.text
        return [listed_job["id"] for listed_job in response.json()["data"]]

    assert job.id in listed(keys.valid())
    assert job.id not in listed(keys.valid(sub="user_bob"))


def test_a_bad_bearer_is_not_rescued_by_a_good_cookie(http: httpx.Client, keys: Keys) -> None:
    headers = {"Authorization": "Bearer not-a-jwt", "Cookie": f"__session={keys.valid()}"}
    assert_unauthorized(http.get("/jobs", headers=headers))


def test_with_clerk_configured_a_locally_minted_token_is_refused(http: httpx.Client, server: tuple[str, Path]) -> None:
    local = LocalKeys(server[1]).mint("user_alice")
    assert_unauthorized(http.get("/jobs", headers={"Authorization": f"Bearer {local}"}))


@pytest.mark.realtime  # the server's cooldown runs on its own clock; the bounds below hold however slow the machine
def test_a_rotated_key_is_accepted_after_the_cooldown_and_unknown_kids_do_not_hammer_the_jwks(
    http: httpx.Client, jwks: JwksServer, keys: Keys
) -> None:
    def status(token: str) -> int:
        return http.get("/jobs", headers={"Authorization": f"Bearer {token}"}).status_code

    # Every key and token first: RSA generation is slow on a busy CPU and must not run inside the timed part.
    rotated = rsa_key()
    unknown = rsa_key().mint(claims())
    bogus = [rsa_key(kid=f"ins_bogus_{i}").mint(claims()) for i in range(10)]

    time.sleep(COOLDOWN_S + 0.2)  # out of any cooldown earlier tests started
    before = jwks.fetches
    started = time.monotonic()
    assert status(unknown) == 401  # an unknown kid: one refetch
    assert jwks.fetches == before + 1
    jwks.publish(keys.signing, rotated)
    assert [status(token) for token in bogus] == [401] * 10
    # At most one fetch per cooldown, whatever the burst took: without the cooldown this is 11 fetches.
    windows = int((time.monotonic() - started) // COOLDOWN_S)
    assert jwks.fetches - before <= 1 + windows, "unknown kids within the cooldown fetched the JWKS again"

    token = rotated.mint(claims())
    deadline = time.monotonic() + 60  # generous: it is due one cooldown after the last fetch
    while status(token) != 200:  # picked up without a restart, once the cooldown allows a fetch
        assert time.monotonic() < deadline, "the rotated key was never picked up"
        time.sleep(0.2)
    fetched = jwks.fetches
    assert status(rotated.mint(claims())) == 200 and status(keys.valid()) == 200
    assert jwks.fetches == fetched  # known kids come from the cache


# --- Clerk unreachable ---------------------------------------------------------------------------------------------


class SilentClerk:
    """A JWKS URL on 127.0.0.1 that accepts connections and never answers a byte, and can tell how many of them the
    client still holds open (a key fetch in flight)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/.well-known/jwks.json"
        self._connections: list[socket.socket] = []
        threading.Thread(target=self._accept, name="silent-clerk", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # closed
                return
            self._connections.append(connection)

    def held_open(self) -> int:
        count = 0
        for connection in list(self._connections):
            try:
                while connection.recv(65536, socket.MSG_DONTWAIT):  # read the request; b"" once the client closed
                    pass
            except BlockingIOError:
                count += 1  # still open, nothing more to read
            except OSError:
                pass
        return count

    def close(self) -> None:
        self._listener.close()
        for connection in self._connections:
            connection.close()


@pytest.fixture(scope="module")
def closed_clerk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {"CLERK_JWKS_URL": f"http://127.0.0.1:{free_port()}/.well-known/jwks.json", "CLERK_ISSUER": ISSUER}
    with serve(tmp_path_factory.mktemp("closed-clerk"), env) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def hanging_clerk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, SilentClerk]]:
    clerk = SilentClerk()
    # CLERK_TIMEOUT_S bounds a fetch: the window in which the test below must get its /healthz answered
    env = {"CLERK_JWKS_URL": clerk.url, "CLERK_ISSUER": ISSUER, "CLERK_TIMEOUT_S": "3"}
    try:
        with serve(tmp_path_factory.mktemp("hanging-clerk"), env) as base_url:
            yield base_url, clerk
    finally:
        clerk.close()


def test_an_unreachable_clerk_is_a_503_for_every_caller(closed_clerk_server: str, keys: Keys) -> None:
    token = keys.valid()
    with httpx.Client(base_url=closed_clerk_server, timeout=60) as client:
        with ThreadPoolExecutor(4) as pool:
            responses = list(
                pool.map(lambda _: client.get("/jobs", headers={"Authorization": f"Bearer {token}"}), range(4))
            )
        assert [(r.status_code, r.json()["error"]["code"]) for r in responses] == [(503, "auth_unavailable")] * 4
        again = client.get("/jobs", headers={"Authorization": f"Bearer {token}"})
    assert again.status_code == 503
    assert "Clerk" in again.json()["error"]["message"]


@pytest.mark.realtime  # a hung key fetch lasts CLERK_TIMEOUT_S of real time; /healthz must be answered within it
def test_while_a_key_fetch_hangs_the_server_keeps_answering_and_the_caller_gets_a_503(
    hanging_clerk_server: tuple[str, SilentClerk], keys: Keys
) -> None:
    base_url, clerk = hanging_clerk_server
    token = keys.valid()
    with httpx.Client(base_url=base_url, timeout=60) as client, ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(client.get, "/jobs", headers={"Authorization": f"Bearer {token}"})
        deadline = time.monotonic() + 60
        while clerk.held_open() == 0:  # until the server's key fetch is in flight
            assert not waiting.done(), waiting.result().text
            assert time.monotonic() < deadline, "the server never fetched Clerk's keys"
            time.sleep(0.02)
        # Verification runs in the threadpool, not on the event loop: the server answers while the fetch hangs.
        assert client.get("/healthz").status_code == 200
        assert clerk.held_open() == 1, "/healthz was answered only after the key fetch gave up"
        response = waiting.result(timeout=60)
    assert (response.status_code, response.json()["error"]["code"]) == (503, "auth_unavailable")
