"""ASGI middleware around the whole app.

- BodySizeLimit: the request body size limit, enforced before anything parses the body: a declared Content-Length
  over the limit is refused at once, and a body streamed without one (chunked) is counted as it arrives and refused
  the moment it passes the limit. Within the limit the body is buffered and replayed to the app unchanged.
- SecurityHeaders: the standard response headers on every response, errors included.
- cors_middleware_options: CORS for the configured origins only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from robotrain.api.errors import error_response

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BodySizeLimit:
    """`streamed_paths` are left alone: their routes read the body as a stream and enforce their own limit."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, streamed_paths: frozenset[str] = frozenset()):
        self.app = app
        self.max_bytes = max_bytes
        self.streamed_paths = streamed_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS or scope["path"] in self.streamed_paths:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, "payload_too_large", f"request body exceeds the limit of {self.max_bytes} bytes")
        # The client may still be sending; closing the connection avoids reading a body we already refused.
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


# The JSON API loads nothing and is never framed.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# FastAPI's /docs and /redoc pages pull Swagger UI / ReDoc from jsDelivr and start them with an inline script.
DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "connect-src 'self'; worker-src blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
HSTS = "max-age=63072000; includeSubDomains"


class SecurityHeaders:
    """Adds to every response: X-Content-Type-Options nosniff, X-Frame-Options DENY, Referrer-Policy no-referrer, a
    Content-Security-Policy (the strict API one; a looser one for the docs pages), Cache-Control no-store (responses
    carry one user's jobs and files; no shared cache may keep them), and Strict-Transport-Security when the request
    came over https (directly, or through a proxy whose X-Forwarded-Proto uvicorn trusts)."""

    def __init__(self, app: ASGIApp, *, path_csp: Callable[[str], str | None] | None = None):
        self.app = app
        self._path_csp = path_csp  # a page's own policy (the dashboard's), None for the defaults below

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = self._path_csp(scope["path"]) if self._path_csp else None
        if csp is None:
            csp = DOCS_CSP if scope["path"] in DOCS_PATHS else API_CSP
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "no-referrer"
                headers["Content-Security-Policy"] = csp
                headers["Cache-Control"] = "no-store"
                if https:
                    headers["Strict-Transport-Security"] = HSTS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def cors_middleware_options(origins: Sequence[str]) -> dict[str, Any] | None:
    """Options for Starlette's CORSMiddleware, or None (no CORS at all) when no origin is configured. Credentials
    (the `__session` cookie) are allowed only with explicit origins: never together with `*`."""
    origins = [origin.rstrip("/") for origin in origins if origin.strip()]
    if not origins:
        return None
    wildcard = "*" in origins
    return {
        "allow_origins": ["*"] if wildcard else origins,
        "allow_credentials": not wildcard,
        "allow_methods": ["GET", "POST", "PUT", "DELETE"],
        "allow_headers": ["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
        "expose_headers": ["Retry-After", "Content-Disposition"],
        "max_age": 600,
    }
