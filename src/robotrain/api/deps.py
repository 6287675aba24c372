"""Typed dependencies: the caller's identity, the internal caller check, the service, and a job loader that 404s
for a missing job and for another user's job alike, so an ownership check cannot be forgotten.

Every sync dependency (and every sync route) costs a hop to FastAPI's thread pool, and a sync route a second one for
its response validation; under load those hops queue for threads and the GIL. So what only reads app state or
compares strings is `async def` (run inline), and only what blocks is sync or handed to the pool explicitly: token
verification (it may fetch a JWKS) and the store calls (`in_thread`)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, ParamSpec, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from robotrain.errors import Forbidden, Unauthorized
from robotrain.jobs.models import Job
from robotrain.jobs.service import JobService
from robotrain.ports import TokenVerifier
from robotrain.settings import Settings

SESSION_COOKIE = "__session"

P = ParamSpec("P")
T = TypeVar("T")


async def in_thread(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking call (the service, hence the store) in the thread pool: one hop per request."""
    return await run_in_threadpool(function, *args, **kwargs)


bearer_scheme = HTTPBearer(
    auto_error=False,
    description=f"A session JWT (RS256) as `Authorization: Bearer`, or the `{SESSION_COOKIE}` cookie.",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


async def get_service(request: Request) -> JobService:
    return request.app.state.service


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_verifier(request: Request) -> TokenVerifier:
    return request.app.state.verifier


ServiceDep = Annotated[JobService, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def _session_token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is not None:
        return credentials.credentials
    if "authorization" in request.headers:
        # Present but not a usable bearer (another scheme, or an empty token): refuse rather than fall back.
        raise Unauthorized("the Authorization header must be `Bearer <token>`")
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return cookie
    raise Unauthorized()


def current_user(
    request: Request, credentials: Credentials, verifier: Annotated[TokenVerifier, Depends(get_verifier)]
) -> str:
    return verifier.verify(_session_token(request, credentials))


CurrentUser = Annotated[str, Depends(current_user)]


async def internal_caller(credentials: Credentials, settings: SettingsDep) -> None:
    """Only the bearer of ROBOTRAIN_INTERNAL_TOKEN (compared in constant time); nobody when it is unset."""
    expected = settings.internal_token
    if expected is None or not expected.get_secret_value():
        raise Forbidden("internal status updates are disabled: ROBOTRAIN_INTERNAL_TOKEN is not set")
    if credentials is None:
        raise Unauthorized("the internal token is required")
    if not hmac.compare_digest(credentials.credentials.encode(), expected.get_secret_value().encode()):
        raise Forbidden("this route is for internal callers only")


InternalCaller = Depends(internal_caller)


async def owned_job(job_id: str, user: CurrentUser, service: ServiceDep) -> Job:
    return await in_thread(service.get, user, job_id)


OwnedJob = Annotated[Job, Depends(owned_job)]
