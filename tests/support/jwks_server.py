"""A JWKS served over real HTTP on 127.0.0.1, standing in for Clerk's Frontend API (`/.well-known/jwks.json`) and
Backend API (`/v1/jwks`, Bearer secret). It can rotate keys, count fetches, delay or fail its answers.
Also mints RS256 keys and Clerk-shaped session tokens for tests (services.md §1.7)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

FRONTEND_PATH = "/.well-known/jwks.json"
BACKEND_PATH = "/v1/jwks"


@dataclass
class SigningKey:
    kid: str
    private_key: Any
    jwk: dict[str, Any]

    @property
    def public_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode("ascii")
        )

    def mint(self, claims: dict[str, Any] | None = None, *, headers: dict[str, Any] | None = None, **extra: Any) -> str:
        now = int(time.time())
        payload = {"sub": "user_test", "sid": "sess_test", "iat": now, "nbf": now, "exp": now + 60}
        payload.update(claims or {})
        payload.update(extra)
        algorithm = "RS256" if isinstance(self.private_key, rsa.RSAPrivateKey) else "ES256"
        return jwt.encode(payload, self.private_key, algorithm, headers={"kid": self.kid, **(headers or {})})


def rsa_key(kid: str | None = None) -> SigningKey:
    """A fresh RS256 key pair and its public JWK."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = kid or f"ins_{uuid.uuid4().hex[:16]}"
    jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key())) | {"kid": kid, "alg": "RS256", "use": "sig"}
    return SigningKey(kid, private, jwk)


def ec_key(kid: str | None = None) -> SigningKey:
    private = ec.generate_private_key(ec.SECP256R1())
    kid = kid or f"ec_{uuid.uuid4().hex[:16]}"
    jwk = json.loads(ECAlgorithm.to_jwk(private.public_key())) | {"kid": kid, "alg": "ES256", "use": "sig"}
    return SigningKey(kid, private, jwk)


@dataclass
class JwksServer:
    """Serves `{"keys": [...]}` from `jwks` (replace it to rotate). `secret` set: /v1/jwks demands that Bearer.
    `delay_s` holds each answer; `status` overrides the answer's status; `body` overrides the answer's bytes."""

    jwks: list[dict[str, Any]] = field(default_factory=list)
    secret: str | None = None
    delay_s: float = 0.0
    status: int = 200
    body: bytes | None = None
    fetches: int = 0
    authorizations: list[str | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._released = threading.Event()  # wakes delayed handlers on close
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server naming
                with server._lock:
                    server.fetches += 1
                    server.authorizations.append(self.headers.get("Authorization"))
                    delay, status, body = server.delay_s, server.status, server.body
                    document = {"keys": list(server.jwks)}
                if delay:
                    server._released.wait(delay)
                if self.path not in (FRONTEND_PATH, BACKEND_PATH):
                    status, body = 404, b'{"errors": [{"code": "resource_not_found"}]}'
                elif (
                    self.path == BACKEND_PATH
                    and server.secret is not None
                    and self.headers.get("Authorization") != f"Bearer {server.secret}"
                ):
                    status, body = 401, b'{"errors": [{"code": "authentication_invalid"}]}'
                payload = body if body is not None else json.dumps(document).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first (timeout tests)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.frontend_url = self.base_url + FRONTEND_PATH

    def publish(self, *keys: SigningKey | dict[str, Any]) -> None:
        with self._lock:
            self.jwks = [k.jwk if isinstance(k, SigningKey) else k for k in keys]

    def __enter__(self) -> JwksServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
