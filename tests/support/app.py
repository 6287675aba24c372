"""The API app as its entry points build it, for tests that drive it in process: over given components, verifying
tokens with the verifier the settings select, with no control plane unless one is passed."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from robotrain.api.app import create_app
from robotrain.ports import Components
from robotrain.wiring import build_api_keys, build_verifier


def api_app(components: Components, **options: Any) -> FastAPI:
    options.setdefault("verifier", build_verifier(components.settings))
    options.setdefault("api_keys", build_api_keys(components.settings, components.store))
    return create_app(components, **options)
