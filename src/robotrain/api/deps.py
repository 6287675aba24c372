"""Typed dependencies: the caller's identity, the internal caller check, the service, and a job loader that 404s
for a missing job and for another user's job alike, so an ownership check cannot be forgotten.

The caller is a `Principal`: the user, and which kind of credential proved it. A bearer token that starts with `rt_`
is a personal API key (robotrain.apikeys), checked by the API key service; anything else is a session JWT (Clerk's,
or a locally minted one), checked by the verifier. API keys are accepted only in the Authorization header, never
from the session cookie.

Every sync dependency (and every sync route) costs a hop to FastAPI's thread pool, and a sync route a second one for
its response validation; under load those hops queue for threads and the GIL. So what only reads app state or
compares strings is `async def` (run inline), and only what blocks is sync or handed to the pool explicitly: the
principal (token verification may fetch a JWKS; an API key may be looked up in the store) and the store calls
(`in_thread`)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal, ParamSpec, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from robotrain.apikeys.models import looks_like_api_key
from robotrain.apikeys.service import ApiKeyService
from robotrain.errors import Forbidden, OriginRefused, Unauthorized
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


async def get_api_keys(request: Request) -> ApiKeyService | None:
    return request.app.state.api_keys


@dataclass(frozen=True)
class Principal:
    """Who is calling, and with what: a session (Clerk's or a local JWT) or a personal API key."""

    user_id: str
    credential: Literal["session", "api_key"]


# Methods that change nothing: a cookie may authenticate them from anywhere (CORS keeps other origins from reading).
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _session_token(request: Request, credentials: HTTPAuthorizationCredentials | None, settings: Settings) -> str:
    if credentials is not None:
        return credentials.credentials
    if "authorization" in request.headers:
        # Present but not a usable bearer (another scheme, or an empty token): refuse rather than fall back.
        raise Unauthorized("the Authorization header must be `Bearer <token>`")
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        if request.method not in _SAFE_METHODS:
            _check_origin(request, settings)
        return cookie
    raise Unauthorized()


def _check_origin(request: Request, settings: Settings) -> None:
    """A browser attaches the session cookie to any site's request; the Origin it sends says which site made it.
    Only the configured origins may change state with the cookie (a `*` entry allows none: it is not a site). A
    bearer token is never sent by a browser on its own, so it needs no such check."""
    allowed = {origin.strip().rstrip("/") for origin in settings.cors_origins if origin.strip() not in ("", "*")}
    origin = request.headers.get("origin")
    if origin is None or origin.rstrip("/") not in allowed:
        raise OriginRefused(
            "a request that changes state with the session cookie must come from an allowed origin "
            "(ROBOTRAIN_CORS_ORIGINS); send the session token as `Authorization: Bearer` instead"
        )


def current_principal(
    request: Request,
    credentials: Credentials,
    verifier: Annotated[TokenVerifier, Depends(get_verifier)],
    api_keys: Annotated[ApiKeyService | None, Depends(get_api_keys)],
    settings: SettingsDep,
) -> Principal:
    token = _session_token(request, credentials, settings)
    if credentials is not None and looks_like_api_key(token):
        if api_keys is None:
            raise Unauthorized("this server does not accept API keys")
        return Principal(api_keys.authenticate(token), "api_key")
    return Principal(verifier.verify(token), "session")


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def current_user(principal: CurrentPrincipal) -> str:
    """The caller's user id (FastAPI resolves the principal once per request, however many dependencies ask)."""
    return principal.user_id


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
