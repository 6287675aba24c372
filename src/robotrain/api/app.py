"""The FastAPI application: components, the JobService, the local dispatch loop's lifetime, the middleware (security
headers, CORS, body size limit), the submit rate limiter, and the one set of error handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware

from robotrain.api.errors import install_error_handlers
from robotrain.api.middleware import BodySizeLimit, SecurityHeaders, cors_middleware_options
from robotrain.api.rate_limit import SubmitRateLimiter
from robotrain.api.routes import health_router, jobs_router
from robotrain.auth import build_verifier
from robotrain.dispatch import Dispatcher, DispatchLoop
from robotrain.jobs.service import JobService
from robotrain.ports import TokenVerifier
from robotrain.settings import Settings
from robotrain.wiring import Components, build_components


def create_app(
    settings: Settings | None = None,
    *,
    components: Components | None = None,
    verifier: TokenVerifier | None = None,
    start_dispatch: bool = True,
    kick: Callable[[], None] | None = None,
) -> FastAPI:
    """The API over `components` (built from `settings` when not given). With `start_dispatch` a DispatchLoop
    drains the queue in the background for the app's lifetime and every submit kicks it; without it (tests that
    drive the Dispatcher by hand) nothing dispatches."""
    if settings is None:
        settings = components.settings if components is not None else Settings()
    if components is None:
        components = build_components(settings)
    if verifier is None:
        verifier = build_verifier(settings)
    loop = DispatchLoop(Dispatcher(components), settings.drain_interval_s) if start_dispatch else None
    # Without a local loop, `kick` is how a submit wakes the dispatcher elsewhere (Modal spawns its drain function).
    service = JobService(components, kick=loop.kick if loop is not None else kick)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if loop is not None:
            loop.start()
        try:
            yield
        finally:
            if loop is not None:
                await run_in_threadpool(loop.stop)

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
    app.state.dispatch_loop = loop
    app.state.submit_limiter = SubmitRateLimiter(settings.submit_rate_per_minute)
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
