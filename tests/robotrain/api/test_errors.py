"""An unexpected exception is a 500 with an opaque body in the one error shape, and it is logged."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from robotrain.api.app import create_app
from robotrain.errors import AuthUnavailable
from robotrain.settings import Settings
from robotrain.wiring import build_components
from tests.robotrain.api.conftest import seed_keys


class ExplodingVerifier:
    """A verifier with a bug in it, to reach the catch-all handler through a real request."""

    def verify(self, token: str) -> str:
        raise RuntimeError("secret internal detail")


class UnreachableVerifier:
    def verify(self, token: str) -> str:
        raise AuthUnavailable("the identity provider cannot be reached")


def test_unexpected_exception_is_an_opaque_500_and_logged(
    tmp_path: Path, key_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seed_keys(key_dir, tmp_path)
    settings = Settings(data_dir=tmp_path)
    app = create_app(build_components(settings), verifier=ExplodingVerifier())
    with TestClient(app, raise_server_exceptions=False) as client, caplog.at_level(logging.ERROR, "robotrain.api"):
        response = client.get("/jobs", headers={"Authorization": "Bearer x"})
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal", "message": "internal server error"}}
    assert "secret internal detail" not in response.text
    assert any("secret internal detail" in str(record.exc_info[1]) for record in caplog.records if record.exc_info)


def test_unreachable_identity_provider_is_503(tmp_path: Path, key_dir: Path) -> None:
    seed_keys(key_dir, tmp_path)
    settings = Settings(data_dir=tmp_path)
    app = create_app(build_components(settings), verifier=UnreachableVerifier())
    with TestClient(app) as client:
        response = client.get("/jobs", headers={"Authorization": "Bearer x"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "auth_unavailable"
