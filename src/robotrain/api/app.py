"""The FastAPI application over one process's Components: the JobService, the middleware (security headers, CORS,
body size limit; all pure ASGI, so no request pays for a BaseHTTPMiddleware task), and the one set of error
handlers. The per-user submit rate limit lives in the store (JobStore.submit), so it holds across API processes. It
builds no adapters and starts no control plane: its entry point hands it both (`robotrain serve` a local
DispatchLoop, Modal a drain kick)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Protocol

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware

from robotrain.api.errors import install_error_handlers
from robotrain.api.middleware import BodySizeLimit, SecurityHeaders, cors_middleware_options
from robotrain.api.routes import health_router, jobs_router
from robotrain.jobs.service import JobService
from robotrain.ports import Components, TokenVerifier


class Background(Protocol):
    """Something that runs beside the API for the app's lifetime (the local dispatch loop)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def create_app(
    components: Components,
    *,
    verifier: TokenVerifier,
    kick: Callable[[], None] | None = None,
    background: Sequence[Background] = (),
) -> FastAPI:
    """The API over `components`, authenticating with `verifier`. `kick` is how a submit wakes the control plane
    (a local loop's kick, or spawning Modal's drain); `background` is started and stopped with the app."""
    settings = components.settings
    service = JobService(components, kick=kick)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for task in background:
            task.start()
        try:
            yield
        finally:
            for task in reversed(background):
                await run_in_threadpool(task.stop)

    app = FastAPI(
        title="robotrain",
        version="0.1.0",
        description="Submit robot policy training jobs, follow them, and download their checkpoints.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.components = components
    app.state.service = service
    app.state.verifier = verifier
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(jobs_router)
    # The last added runs first: security headers wrap everything (413s and CORS preflights included), and CORS
    # wraps the size limit so a browser can read its 413.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    cors = cors_middleware_options(settings.cors_origins)
    if cors is not None:
        app.add_middleware(CORSMiddleware, **cors)
    app.add_middleware(SecurityHeaders)
    return app
