"""Security headers on every response (errors and the 413 included), CORS only for configured origins, and
credentials only with explicit origins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from robotrain.api.middleware import API_CSP, DOCS_CSP, HSTS, cors_middleware_options
from robotrain.settings import Settings
from robotrain.wiring import build_components
from tests.robotrain.api.conftest import VALID_SPEC, seed_keys
from tests.support.app import api_app

ORIGIN = "https://app.example.com"


def assert_security_headers(response, csp: str = API_CSP) -> None:
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Content-Security-Policy"] == csp
    assert response.headers["Cache-Control"] == "no-store"


def test_every_kind_of_response_carries_the_security_headers(client: TestClient, alice: dict[str, str]) -> None:
    job = client.post("/jobs", json=VALID_SPEC, headers=alice)
    responses = [
        client.get("/healthz"),
        job,
        client.get(f"/jobs/{job.json()['id']}", headers=alice),
        client.get("/jobs", headers=alice),
        client.get("/jobs"),  # 401
        client.get("/jobs/job_missing", headers=alice),  # 404
        client.post("/jobs", json={"policy": {}}, headers=alice),  # 422
        client.post("/jobs", content=b"x" * (1024 * 1024 + 1), headers=alice),  # 413 from the middleware
        client.get("/openapi.json"),
    ]
    for response in responses:
        assert_security_headers(response)
    assert "Strict-Transport-Security" not in responses[0].headers  # plain http


def test_docs_get_a_csp_that_lets_swagger_ui_load(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert_security_headers(response, DOCS_CSP)
    # The page's own script sources are allowed by the policy it is served with.
    assert "https://cdn.jsdelivr.net" in response.text and "https://cdn.jsdelivr.net" in DOCS_CSP


def test_hsts_only_over_https(settings: Settings, components) -> None:
    app = api_app(components)
    with TestClient(app, base_url="https://testserver") as client:
        assert client.get("/healthz").headers["Strict-Transport-Security"] == HSTS


def test_without_configured_origins_there_are_no_cors_headers(client: TestClient, alice: dict[str, str]) -> None:
    response = client.get("/jobs", headers=alice | {"Origin": ORIGIN})
    assert response.status_code == 200
    assert not any(name.lower().startswith("access-control-") for name in response.headers)
    preflight = client.options("/jobs", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


@pytest.fixture
def cors_client(tmp_path: Path, key_dir: Path) -> Iterator[TestClient]:
    seed_keys(key_dir, tmp_path)
    settings = Settings(data_dir=tmp_path, cors_origins=f"{ORIGIN}, https://other.example.com/")
    with TestClient(api_app(build_components(settings))) as client:
        yield client


def test_a_configured_origin_gets_cors_with_credentials(cors_client: TestClient, alice: dict[str, str]) -> None:
    preflight = cors_client.options(
        "/jobs",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert preflight.headers["Access-Control-Allow-Credentials"] == "true"
    assert_security_headers(preflight)
    response = cors_client.get("/jobs", headers=alice | {"Origin": "https://other.example.com"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://other.example.com"
    assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]
    # A body over the limit is still readable by the page that sent it.
    too_big = cors_client.post("/jobs", content=b"x" * (1024 * 1024 + 1), headers=alice | {"Origin": ORIGIN})
    assert too_big.status_code == 413 and too_big.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_an_unlisted_origin_gets_no_cors(cors_client: TestClient, alice: dict[str, str]) -> None:
    evil = "https://evil.example.com"
    preflight = cors_client.options("/jobs", headers={"Origin": evil, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    response = cors_client.get("/jobs", headers=alice | {"Origin": evil})
    assert "access-control-allow-origin" not in response.headers


def test_a_wildcard_origin_never_allows_credentials() -> None:
    options = cors_middleware_options(["*"])
    assert options is not None
    assert options["allow_origins"] == ["*"] and options["allow_credentials"] is False
    assert cors_middleware_options([]) is None
    assert cors_middleware_options(["  "]) is None
