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

from robotrain.api.apikeys import router as api_keys_router
from robotrain.api.dashboard import dashboard_csp, install_dashboard, is_dashboard_path
from robotrain.api.datasets import UPLOAD_PATHS, datasets_router
from robotrain.api.errors import install_error_handlers
from robotrain.api.middleware import BodySizeLimit, SecurityHeaders, cors_middleware_options
from robotrain.api.routes import health_router, jobs_router
from robotrain.api.streams import streams_router
from robotrain.api.webhooks import webhooks_router
from robotrain.apikeys.service import ApiKeyService
from robotrain.datasets.service import DatasetService
from robotrain.jobs.service import JobService
from robotrain.ports import Components, TokenVerifier
from robotrain.webhooks.service import WebhookService


class Background(Protocol):
    """Something that runs beside the API for the app's lifetime (the local dispatch loop)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def create_app(
    components: Components,
    *,
    verifier: TokenVerifier,
    api_keys: ApiKeyService | None = None,
    kick: Callable[[str], None] | None = None,
    background: Sequence[Background] = (),
) -> FastAPI:
    """The API over `components`, authenticating sessions with `verifier` and personal API keys with `api_keys`
    (None: not accepted). `kick(job_id)` is how a submit wakes the control plane (a local loop's kick, or spawning
    Modal's drain for that job); `background` is started and stopped with the app."""
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
    app.state.datasets = DatasetService(components)
    app.state.verifier = verifier
    app.state.api_keys = api_keys  # None: API keys are neither issued nor accepted
    app.state.webhook_service = WebhookService(components.webhooks, settings) if components.webhooks else None
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(streams_router)  # before jobs_router: its routes match only `Accept: text/event-stream`
    app.include_router(jobs_router)
    app.include_router(api_keys_router)
    app.include_router(webhooks_router)
    install_dashboard(app, settings)
    app.include_router(datasets_router)
    # The last added runs first: security headers wrap everything (413s and CORS preflights included), and CORS
    # wraps the size limit so a browser can read its 413.
    # Uploads stream their bodies to disk under their own limit (ROBOTRAIN_MAX_UPLOAD_BYTES), unbuffered.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, streamed_paths=UPLOAD_PATHS)
    cors = cors_middleware_options(settings.cors_origins)
    if cors is not None:
        app.add_middleware(CORSMiddleware, **cors)
    csp = dashboard_csp(settings)
    app.add_middleware(SecurityHeaders, path_csp=lambda path: csp if is_dashboard_path(path) else None)
    return app
