"""PUT /jobs/{id}/status: only the internal token, compared in constant time; nobody when it is unset."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from robotrain.auth.local_keys import LocalKeys
from robotrain.settings import Settings
from robotrain.wiring import build_components
from tests.robotrain.api.conftest import VALID_SPEC, seed_keys
from tests.robotrain.api.test_routes import assert_error
from tests.support.app import api_app


def test_internal_caller_moves_a_job_and_illegal_moves_are_409(
    client: TestClient, alice: dict[str, str], internal: dict[str, str]
) -> None:
    job_id = client.post("/jobs", json=VALID_SPEC, headers=alice).json()["id"]
    starting = client.put(f"/jobs/{job_id}/status", json={"status": "starting"}, headers=internal)
    assert starting.status_code == 200, starting.text
    assert starting.json()["status"] == "starting"
    running = client.put(
        f"/jobs/{job_id}/status",
        json={"status": "running", "progress": {"step": 3, "total_steps": 10, "metrics": {"train/loss": 0.5}}},
        headers=internal,
    )
    assert running.json()["progress"]["step"] == 3
    failed = client.put(
        f"/jobs/{job_id}/status",
        json={"status": "failed", "error": {"code": "training_error", "message": "nan loss"}},
        headers=internal,
    )
    assert failed.json()["error"] == {"code": "training_error", "message": "nan loss"}
    assert_error(client.put(f"/jobs/{job_id}/status", json={"status": "running"}, headers=internal), 409)


def test_internal_route_errors(client: TestClient, alice: dict[str, str], internal: dict[str, str]) -> None:
    job_id = client.post("/jobs", json=VALID_SPEC, headers=alice).json()["id"]
    body = {"status": "starting"}
    assert_error(client.put(f"/jobs/{job_id}/status", json=body), 401)
    assert_error(client.put(f"/jobs/{job_id}/status", json=body, headers=alice), 403, "forbidden")
    wrong = {"Authorization": "Bearer internal-test-token-012345678X"}
    assert_error(client.put(f"/jobs/{job_id}/status", json=body, headers=wrong), 403, "forbidden")
    assert_error(client.put("/jobs/job_missing/status", json=body, headers=internal), 404, "job_not_found")
    assert_error(client.put(f"/jobs/{job_id}/status", json={"status": "asleep"}, headers=internal), 422)
    assert_error(client.put(f"/jobs/{job_id}/status", json={**body, "extra": 1}, headers=internal), 422)
    assert client.get(f"/jobs/{job_id}", headers=alice).json()["status"] == "queued"


def test_without_an_internal_token_the_route_refuses_everyone(tmp_path: Path, key_dir: Path) -> None:
    seed_keys(key_dir, tmp_path)
    settings = Settings(data_dir=tmp_path)
    app = api_app(build_components(settings))
    alice = {"Authorization": f"Bearer {LocalKeys(tmp_path).mint('alice')}"}
    with TestClient(app) as client:
        job_id = client.post("/jobs", json=VALID_SPEC, headers=alice).json()["id"]
        for headers in ({}, alice, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
            assert_error(client.put(f"/jobs/{job_id}/status", json={"status": "starting"}, headers=headers), 403)
