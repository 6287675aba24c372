"""The HTTP contract of the jobs API over real embedded components."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from robotrain.jobs.models import JobStatus, MetricPoint
from robotrain.ports import Components
from tests.robotrain.api.conftest import VALID_SPEC

PUBLIC_JOB_FIELDS = {
    "id",
    "user_id",
    "name",
    "status",
    "spec",
    "attempt",
    "retry_of",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "progress",
    "result",
    "error",
}


def submit(client: TestClient, headers: dict[str, str], **overrides: object) -> dict:
    response = client.post("/jobs", json={**VALID_SPEC, **overrides}, headers=headers)
    assert response.status_code == 202, response.text
    return response.json()


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


def test_healthz_needs_no_token(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_submit_returns_202_with_the_public_job_only(client: TestClient, alice: dict[str, str]) -> None:
    job = submit(client, alice)
    assert set(job) == PUBLIC_JOB_FIELDS
    assert job["status"] == "queued"
    assert job["user_id"] == "alice"
    assert job["id"].startswith("job_")
    assert job["spec"]["policy"]["type"] == "mlp"
    assert job["progress"] == {"step": 0, "total_steps": 0, "metrics": {}}
    assert job["result"] is None and job["error"] is None


def test_submit_with_trailing_slash_is_the_same_route(client: TestClient, alice: dict[str, str]) -> None:
    response = client.post("/jobs/", json=VALID_SPEC, headers=alice)
    assert response.status_code == 202
    assert client.get("/jobs/", headers=alice).json()["data"][0]["id"] == response.json()["id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**VALID_SPEC, "policy": {"type": "transformer9000"}}, "policy"),
        ({**VALID_SPEC, "training": {"steps": 0}}, "steps"),
        ({**VALID_SPEC, "dataset": {"uri": "ftp://x"}}, "uri"),
        ({k: v for k, v in VALID_SPEC.items() if k != "dataset"}, "dataset"),
        ({**VALID_SPEC, "surprise": 1}, "surprise"),
        ({**VALID_SPEC, "compute": {"gpu": "TPU"}}, "gpu"),
    ],
)
def test_invalid_spec_is_422_naming_the_field(
    client: TestClient, alice: dict[str, str], body: dict, field: str
) -> None:
    error = assert_error(client.post("/jobs", json=body, headers=alice), 422, "validation_error")
    assert any(field in [str(part) for part in detail["loc"]] for detail in error["details"]), error
    assert field in error["message"]


def test_body_that_is_not_json_is_422(client: TestClient, alice: dict[str, str]) -> None:
    response = client.post("/jobs", content=b"{not json", headers={**alice, "Content-Type": "application/json"})
    assert_error(response, 422, "validation_error")


def test_body_over_the_limit_is_413(client: TestClient, alice: dict[str, str]) -> None:
    big = {**VALID_SPEC, "name": "x" * (1024 * 1024 + 10)}
    assert_error(client.post("/jobs", json=big, headers=alice), 413, "payload_too_large")


def test_streamed_body_over_the_limit_is_413(client: TestClient, alice: dict[str, str]) -> None:
    def chunks():  # no Content-Length: sent chunked, counted as it arrives
        for _ in range(40):
            yield b" " * 32768

    response = client.post("/jobs", content=chunks(), headers={**alice, "Content-Type": "application/json"})
    assert_error(response, 413, "payload_too_large")


def test_every_job_route_needs_a_token(client: TestClient, alice: dict[str, str]) -> None:
    job_id = submit(client, alice)["id"]
    routes = [
        ("POST", "/jobs"),
        ("GET", "/jobs"),
        ("GET", f"/jobs/{job_id}"),
        ("POST", f"/jobs/{job_id}/cancel"),
        ("POST", f"/jobs/{job_id}/retry"),
        ("GET", f"/jobs/{job_id}/events"),
        ("GET", f"/jobs/{job_id}/metrics"),
        ("GET", f"/jobs/{job_id}/artifacts"),
        ("GET", f"/jobs/{job_id}/artifacts/model.safetensors"),
    ]
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer garbage"}, {"Authorization": "Basic x"}):
        for method, path in routes:
            response = client.request(method, path, headers=headers, json=VALID_SPEC if method == "POST" else None)
            assert_error(response, 401, "unauthorized")
            assert response.headers["WWW-Authenticate"] == "Bearer"


def test_the_session_cookie_signs_in_its_subject(client: TestClient, keys, alice: dict[str, str]) -> None:
    carol_token = keys.mint("carol")
    job = submit(client, {"Authorization": f"Bearer {carol_token}"})
    client.cookies.set("__session", carol_token)
    try:  # no Authorization header: the cookie alone says who asks
        assert [listed["id"] for listed in client.get("/jobs").json()["data"]] == [job["id"]]
        assert client.get(f"/jobs/{job['id']}").json()["user_id"] == "carol"
    finally:
        client.cookies.clear()
    assert client.get(f"/jobs/{job['id']}", headers=alice).status_code == 404


def test_list_is_newest_first_with_a_cursor(client: TestClient, alice: dict[str, str]) -> None:
    ids = [submit(client, alice, name=f"job {i}")["id"] for i in range(5)]
    first = client.get("/jobs", params={"limit": 2}, headers=alice).json()
    assert [job["id"] for job in first["data"]] == ids[::-1][:2]
    assert first["next_cursor"]
    second = client.get("/jobs", params={"limit": 2, "cursor": first["next_cursor"]}, headers=alice).json()
    assert [job["id"] for job in second["data"]] == ids[::-1][2:4]
    third = client.get("/jobs", params={"limit": 2, "cursor": second["next_cursor"]}, headers=alice).json()
    assert [job["id"] for job in third["data"]] == ids[:1]
    assert third["next_cursor"] is None


def test_list_filters_by_status(client: TestClient, alice: dict[str, str]) -> None:
    kept = submit(client, alice)["id"]
    cancelled = submit(client, alice)["id"]
    client.post(f"/jobs/{cancelled}/cancel", headers=alice)
    listed = client.get("/jobs", params={"status": "queued"}, headers=alice).json()["data"]
    assert [job["id"] for job in listed] == [kept]
    listed = client.get("/jobs", params={"status": "cancelled"}, headers=alice).json()["data"]
    assert [job["id"] for job in listed] == [cancelled]


@pytest.mark.parametrize(
    "params",
    [{"status": "sleeping"}, {"limit": 0}, {"limit": 101}, {"limit": "many"}, {"cursor": "not-a-cursor"}],
)
def test_bad_list_parameters_are_422(client: TestClient, alice: dict[str, str], params: dict) -> None:
    submit(client, alice)
    assert_error(client.get("/jobs", params=params, headers=alice), 422)


def test_another_users_job_is_404_exactly_like_a_missing_one(
    client: TestClient, alice: dict[str, str], bob: dict[str, str], components: Components
) -> None:
    job_id = submit(client, alice)["id"]
    components.artifacts.job_dir(job_id).joinpath("model.safetensors").write_bytes(b"weights")
    missing_id = job_id[:-4] + "zzzz"
    routes = [
        ("GET", "/jobs/{id}"),
        ("POST", "/jobs/{id}/cancel"),
        ("POST", "/jobs/{id}/retry"),
        ("GET", "/jobs/{id}/events"),
        ("GET", "/jobs/{id}/metrics"),
        ("GET", "/jobs/{id}/artifacts"),
        ("GET", "/jobs/{id}/artifacts/model.safetensors"),
    ]
    for method, template in routes:
        theirs = client.request(method, template.format(id=job_id), headers=bob)
        missing = client.request(method, template.format(id=missing_id), headers=bob)
        assert_error(theirs, 404, "job_not_found")
        assert theirs.json()["error"]["message"].replace(job_id, "ID") == missing.json()["error"]["message"].replace(
            missing_id, "ID"
        )
    assert client.get("/jobs", headers=bob).json() == {"data": [], "next_cursor": None}
    # And bob's attempts changed nothing.
    assert client.get(f"/jobs/{job_id}", headers=alice).json()["status"] == "queued"


def test_cancel_a_queued_job_then_409(client: TestClient, alice: dict[str, str]) -> None:
    job_id = submit(client, alice)["id"]
    cancelled = client.post(f"/jobs/{job_id}/cancel", headers=alice)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["finished_at"] is not None
    assert_error(client.post(f"/jobs/{job_id}/cancel", headers=alice), 409, "job_conflict")


def test_retry_only_from_failed_or_cancelled(client: TestClient, alice: dict[str, str]) -> None:
    job_id = submit(client, alice)["id"]
    assert_error(client.post(f"/jobs/{job_id}/retry", headers=alice), 409, "job_conflict")
    client.post(f"/jobs/{job_id}/cancel", headers=alice)
    retried = client.post(f"/jobs/{job_id}/retry", headers=alice)
    assert retried.status_code == 202
    assert retried.json()["retry_of"] == job_id
    assert retried.json()["status"] == "queued"
    assert retried.json()["spec"] == client.get(f"/jobs/{job_id}", headers=alice).json()["spec"]


def test_events_page_forward_with_after(client: TestClient, alice: dict[str, str]) -> None:
    job_id = submit(client, alice)["id"]
    client.post(f"/jobs/{job_id}/cancel", headers=alice)
    events = client.get(f"/jobs/{job_id}/events", headers=alice).json()["data"]
    assert [event["kind"] for event in events] == ["status", "status"]
    assert events[0]["message"].startswith("queued")
    assert events[1]["message"].startswith("cancelled")
    later = client.get(f"/jobs/{job_id}/events", params={"after": events[0]["id"]}, headers=alice).json()["data"]
    assert [event["id"] for event in later] == [events[1]["id"]]
    assert_error(client.get(f"/jobs/{job_id}/events", params={"after": -1}, headers=alice), 422)


def test_metrics_are_series_of_step_value_pairs(
    client: TestClient, alice: dict[str, str], components: Components
) -> None:
    job_id = submit(client, alice)["id"]
    components.store.append_metrics(
        job_id,
        [MetricPoint(step=10, name="train/loss", value=0.5), MetricPoint(step=20, name="train/loss", value=0.25)],
    )
    assert client.get(f"/jobs/{job_id}/metrics", headers=alice).json() == {
        "series": {"train/loss": [[10, 0.5], [20, 0.25]]}
    }


def test_artifacts_list_and_download(client: TestClient, alice: dict[str, str], components: Components) -> None:
    job_id = submit(client, alice)["id"]
    job_dir = components.artifacts.job_dir(job_id)
    (job_dir / "checkpoints" / "last").mkdir(parents=True)
    (job_dir / "checkpoints" / "last" / "model.safetensors").write_bytes(b"\x00weights")
    (job_dir / "result.json").write_text('{"ok": true}')
    listed = client.get(f"/jobs/{job_id}/artifacts", headers=alice).json()["data"]
    assert {(item["path"], item["size"]) for item in listed} == {
        ("checkpoints/last/model.safetensors", 8),
        ("result.json", 12),
    }
    download = client.get(f"/jobs/{job_id}/artifacts/checkpoints/last/model.safetensors", headers=alice)
    assert download.status_code == 200
    assert download.content == b"\x00weights"
    assert download.headers["content-type"] == "application/octet-stream"


@pytest.mark.parametrize(
    "path", ["missing.bin", "..%2F..%2Frobotrain.sqlite3", "checkpoints/..%2F..%2F..%2Fkeys%2Flocal_rs256.pem"]
)
def test_artifact_outside_the_job_or_missing_is_404(
    client: TestClient, alice: dict[str, str], components: Components, path: str
) -> None:
    job_id = submit(client, alice)["id"]
    components.artifacts.job_dir(job_id).joinpath("checkpoints").mkdir(parents=True)
    response = client.get(f"/jobs/{job_id}/artifacts/{path}", headers=alice)
    assert_error(response, 404)


def test_unknown_route_and_wrong_method_use_the_error_shape(client: TestClient, alice: dict[str, str]) -> None:
    assert_error(client.get("/nope", headers=alice), 404, "not_found")
    assert_error(client.delete("/jobs", headers=alice), 405, "method_not_allowed")


def test_openapi_hides_internals_and_documents_errors(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    job_schema = schema["components"]["schemas"]["JobOut"]
    assert set(job_schema["properties"]) == PUBLIC_JOB_FIELDS
    assert "/jobs/" not in schema["paths"]
    submit_responses = schema["paths"]["/jobs"]["post"]["responses"]
    assert {"202", "401", "413", "422"} <= set(submit_responses)
    assert submit_responses["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")


def test_job_status_enum_is_documented(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert set(schema["components"]["schemas"]["JobStatus"]["enum"]) == {s.value for s in JobStatus}
