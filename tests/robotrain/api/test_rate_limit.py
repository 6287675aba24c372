"""The per-user submit rate limit (a token bucket kept in the store) and the per-user cap on unfinished jobs, over
HTTP on real embedded components, including two API processes sharing one store. The bucket's arithmetic on a
controlled clock is part of the store contract (tests/robotrain/adapters/round_trip_contract.py), run on both stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from robotrain.jobs.lifecycle import claim
from robotrain.jobs.models import JobStatus
from robotrain.settings import Settings
from robotrain.wiring import build_components
from tests.robotrain.api.conftest import INTERNAL_TOKEN, VALID_SPEC, seed_keys
from tests.support.app import api_app


@pytest.fixture
def limited_client(tmp_path: Path, key_dir: Path, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    seed_keys(key_dir, tmp_path)
    settings = Settings(data_dir=tmp_path, internal_token=INTERNAL_TOKEN, **request.param)
    app = api_app(build_components(settings))
    with TestClient(app) as client:
        yield client


def _assert_429(response, code: str = "rate_limited") -> dict:
    assert response.status_code == 429, response.text
    assert int(response.headers["Retry-After"]) >= 1
    error = response.json()["error"]
    assert error["code"] == code
    return error


@pytest.mark.parametrize("limited_client", [{"submit_rate_per_minute": 2}], indirect=True)
def test_submitting_faster_than_the_rate_is_429_with_retry_after(
    limited_client: TestClient, alice: dict[str, str], bob: dict[str, str]
) -> None:
    for _ in range(2):
        assert limited_client.post("/jobs", json=VALID_SPEC, headers=alice).status_code == 202
    error = _assert_429(limited_client.post("/jobs/", json=VALID_SPEC, headers=alice))
    assert "per minute" in error["message"]
    # Another user's bucket is untouched, and reading is not limited.
    assert limited_client.post("/jobs", json=VALID_SPEC, headers=bob).status_code == 202
    assert limited_client.get("/jobs", headers=alice).status_code == 200
    assert len(limited_client.get("/jobs", headers=alice).json()["data"]) == 2


@pytest.mark.parametrize("limited_client", [{"submit_rate_per_minute": 1}], indirect=True)
def test_retry_spends_from_the_same_bucket(limited_client: TestClient, alice: dict[str, str]) -> None:
    job_id = limited_client.post("/jobs", json=VALID_SPEC, headers=alice).json()["id"]
    assert limited_client.post(f"/jobs/{job_id}/cancel", headers=alice).status_code == 200
    _assert_429(limited_client.post(f"/jobs/{job_id}/retry", headers=alice))


@pytest.mark.parametrize("limited_client", [{"max_active_jobs_per_user": 2}], indirect=True)
def test_a_user_at_the_unfinished_jobs_cap_gets_429_until_one_ends(
    limited_client: TestClient, alice: dict[str, str], bob: dict[str, str]
) -> None:
    first = limited_client.post("/jobs", json=VALID_SPEC, headers=alice).json()
    second = limited_client.post("/jobs", json=VALID_SPEC, headers=alice).json()
    # Starting and running count as much as queued.
    store = limited_client.app.state.components.store
    assert claim(store, store.get(second["id"]), max_active=5, max_active_per_user=5) is not None
    error = _assert_429(limited_client.post("/jobs", json=VALID_SPEC, headers=alice))
    assert "2 unfinished jobs" in error["message"] and "limit is 2" in error["message"]
    # A refused submit with an Idempotency-Key leaves no key behind: the same key works once there is room.
    headers = alice | {"Idempotency-Key": "k1"}
    _assert_429(limited_client.post("/jobs", json=VALID_SPEC, headers=headers))
    assert limited_client.post("/jobs", json=VALID_SPEC, headers=bob).status_code == 202

    assert limited_client.post(f"/jobs/{first['id']}/cancel", headers=alice).status_code == 200
    third = limited_client.post("/jobs", json=VALID_SPEC, headers=headers)
    assert third.status_code == 202, third.text
    # At the cap again: a retry (which creates a job) is refused too, but a replay of the key answers with the job it
    # created (a client retrying after a lost response must get its job, cap or not); nothing is created twice.
    _assert_429(limited_client.post(f"/jobs/{first['id']}/retry", headers=alice))
    replay = limited_client.post("/jobs", json=VALID_SPEC, headers=headers)
    assert replay.status_code == 202 and replay.json()["id"] == third.json()["id"]
    statuses = [job["status"] for job in limited_client.get("/jobs", headers=alice).json()["data"]]
    assert sorted(statuses) == sorted([JobStatus.QUEUED, JobStatus.STARTING, JobStatus.CANCELLED])
    assert limited_client.post(f"/jobs/{second['id']}/cancel", headers=alice).status_code == 200
    assert limited_client.post("/jobs", json=VALID_SPEC, headers=headers).json()["id"] == third.json()["id"]


def test_the_rate_holds_across_two_api_processes_sharing_the_store(
    tmp_path: Path, key_dir: Path, alice: dict[str, str]
) -> None:
    # Two apps with their own adapters over the same data dir: what two API containers over one Supabase are.
    seed_keys(key_dir, tmp_path)
    settings = Settings(data_dir=tmp_path, submit_rate_per_minute=2)
    with (
        TestClient(api_app(build_components(settings))) as first,
        TestClient(api_app(build_components(settings))) as second,
    ):
        assert first.post("/jobs", json=VALID_SPEC, headers=alice).status_code == 202
        assert second.post("/jobs", json=VALID_SPEC, headers=alice).status_code == 202
        for client in (first, second):
            error = _assert_429(client.post("/jobs", json=VALID_SPEC, headers=alice))
            assert "at most 2 per minute" in error["message"]
