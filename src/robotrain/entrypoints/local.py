"""The embedded service that `robotrain serve` runs: the API and, beside it in the same process, the control plane
as a DispatchLoop thread (kicked by every submit), over the adapters the settings select."""

from __future__ import annotations

from fastapi import FastAPI

from robotrain.api.app import create_app
from robotrain.control import Dispatcher, DispatchLoop
from robotrain.settings import Settings
from robotrain.wiring import build_api_keys, build_components, build_verifier


def local_app(settings: Settings) -> FastAPI:
    components = build_components(settings)
    loop = DispatchLoop(Dispatcher(components), settings.drain_interval_s)
    return create_app(
        components,
        verifier=build_verifier(settings),
        api_keys=build_api_keys(settings, components.store),
        kick=loop.kick,
        background=[loop],
    )
