"""Two users: through every route that takes a job id, user B gets exactly what a missing job gets (status, code and
message with the id swapped), and A's jobs do not change. The routes are read from the app itself, so a new
job-scoped route fails this test until it is covered here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from robotrain.jobs.models import JobStatus, MetricPoint, new_job_id
from robotrain.ports import Components
from tests.security.conftest import bearer
from tests.support.datasets import make_upload

SPEC = {
    "name": "isolation",
    "policy": {"type": "mlp"},
    "dataset": {"uri": "builtin://push2d?episodes=10"},
    "training": {"steps": 50, "batch_size": 16},
}
ARTIFACT = "checkpoints/last/model.safetensors"

# (method, route path) -> (path for a job id, request kwargs). Every route with a path parameter must be here.
Request = tuple[str, dict[str, Any]]
JOB_ROUTES: dict[tuple[str, str], Callable[[str], Request]] = {
    ("GET", "/jobs/{job_id}"): lambda job_id: (f"/jobs/{job_id}", {}),
    ("POST", "/jobs/{job_id}/cancel"): lambda job_id: (f"/jobs/{job_id}/cancel", {}),
    ("POST", "/jobs/{job_id}/retry"): lambda job_id: (f"/jobs/{job_id}/retry", {}),
    ("GET", "/jobs/{job_id}/events"): lambda job_id: (f"/jobs/{job_id}/events", {"params": {"after": 0}}),
    ("GET", "/jobs/{job_id}/metrics"): lambda job_id: (f"/jobs/{job_id}/metrics", {}),
    ("GET", "/jobs/{job_id}/artifacts"): lambda job_id: (f"/jobs/{job_id}/artifacts", {}),
    ("GET", "/jobs/{job_id}/artifacts/{path:path}"): lambda job_id: (f"/jobs/{job_id}/artifacts/{ARTIFACT}", {}),
    # Internal only: a user's token is refused (403) whether or not the job exists, so it leaks nothing either.
    ("PUT", "/jobs/{job_id}/status"): lambda job_id: (f"/jobs/{job_id}/status", {"json": {"status": "failed"}}),
}

# Routes scoped by another resource's id: their isolation (another user's id answers like a missing one) is tested
# with that resource, in the file named.
COVERED_ELSEWHERE: dict[tuple[str, str], str] = {
    (method, path): "tests/robotrain/api/test_webhooks.py"
    for method, path in (
        ("GET", "/webhooks/{webhook_id}"),
        ("DELETE", "/webhooks/{webhook_id}"),
        ("POST", "/webhooks/{webhook_id}/rotate-secret"),
        ("GET", "/webhooks/{webhook_id}/deliveries"),
        ("POST", "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"),
    )
}


# Routes scoped to a user's API key (robotrain.apikeys): the same rule, for key ids.
KEY_ROUTES: dict[tuple[str, str], Callable[[str], Request]] = {
    ("DELETE", "/api-keys/{key_id}"): lambda key_id: (f"/api-keys/{key_id}", {}),
}


def api_routes(routes: list[Any]) -> list[APIRoute]:
    """Every APIRoute, hidden ones included. FastAPI 0.163 wraps an included router in `_IncludedRouter`, whose
    `original_router` holds the routes with their prefix already applied (we include without an extra prefix)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            found += api_routes(route.original_router.routes)
    return found


def routes_with_path_parameters(client: TestClient) -> set[tuple[str, str]]:
    from_routers = {
        (method, route.path)
        for route in api_routes(client.app.routes)
        if route.param_convertors
        for method in route.methods
    }
    from_schema = {
        (method.upper(), path.replace("{path}", "{path:path}"))
        for path, operations in client.app.openapi()["paths"].items()
        if "{" in path
        for method in operations
    }
    assert from_schema, "the OpenAPI schema lists no route with a path parameter: the check would be void"
    return from_routers | from_schema


# (method, route path) -> path for a dataset id. Every dataset route with a path parameter must be here.
DATASET_ROUTES: dict[tuple[str, str], Callable[[str], str]] = {
    ("GET", "/datasets/{dataset_id}"): lambda dataset_id: f"/datasets/{dataset_id}",
    ("DELETE", "/datasets/{dataset_id}"): lambda dataset_id: f"/datasets/{dataset_id}",
}


def test_every_route_with_a_path_parameter_is_covered(client: TestClient) -> None:
    covered = set(JOB_ROUTES) | set(KEY_ROUTES) | set(DATASET_ROUTES)
    missing = routes_with_path_parameters(client) - covered - set(COVERED_ELSEWHERE)
    assert not missing, f"add these routes to JOB_ROUTES, KEY_ROUTES or DATASET_ROUTES in {__name__}: {sorted(missing)}"
    assert covered <= routes_with_path_parameters(client), "a route table names a route that no longer exists"


@pytest.mark.parametrize("route", list(DATASET_ROUTES), ids=lambda route: f"{route[0]} {route[1]}")
def test_another_users_dataset_answers_exactly_like_a_missing_one_and_stays(
    client: TestClient, components: Components, route: tuple[str, str]
) -> None:
    alice, bob = bearer(components, "user_alice"), bearer(components, "user_bob")
    dataset = make_upload(components, "user_alice")
    before = client.get(f"/datasets/{dataset.id}", headers=alice).json()
    missing_id = "ds_" + "0" * 26
    method, path_for = route[0], DATASET_ROUTES[route]
    expected = normalized(client.request(method, path_for(missing_id), headers=bob), missing_id)
    assert expected[0] == 404
    assert normalized(client.request(method, path_for(dataset.id), headers=bob), dataset.id) == expected
    assert client.get(f"/datasets/{dataset.id}", headers=alice).json() == before


def alices_jobs(client: TestClient, components: Components, alice: dict[str, str]) -> list[str]:
    """A queued job and a cancelled one (retry is legal on it, cancel on the other), each with events, metrics
    and an artifact, so every route would do something real for their owner."""
    job_ids = []
    for _ in range(2):
        job_id = client.post("/jobs", json=SPEC, headers=alice).json()["id"]
        components.store.append_metrics(job_id, [MetricPoint(step=1, name="train/loss", value=0.5)])
        path = components.artifacts.job_dir(job_id) / ARTIFACT
        path.parent.mkdir(parents=True)
        path.write_bytes(b"alice's weights")
        job_ids.append(job_id)
    assert client.post(f"/jobs/{job_ids[1]}/cancel", headers=alice).status_code == 200
    return job_ids


def alices_view(client: TestClient, alice: dict[str, str], job_ids: list[str]) -> dict[str, Any]:
    view: dict[str, Any] = {"list": client.get("/jobs", params={"limit": 100}, headers=alice).json()}
    for job_id in job_ids:
        view[job_id] = [
            client.get(f"/jobs/{job_id}{suffix}", headers=alice).json()
            for suffix in ("", "/events", "/metrics", "/artifacts")
        ] + [client.get(f"/jobs/{job_id}/artifacts/{ARTIFACT}", headers=alice).content]
    return view


def normalized(response, job_id: str) -> tuple[int, str, Any]:
    body = response.json()
    if "error" in body:
        body["error"]["message"] = body["error"]["message"].replace(job_id, "<id>")
    return response.status_code, response.headers["content-type"], body


@pytest.mark.parametrize("route", list(JOB_ROUTES), ids=lambda route: f"{route[0]} {route[1]}")
def test_another_users_job_answers_exactly_like_a_missing_one_and_stays_unchanged(
    client: TestClient, components: Components, route: tuple[str, str]
) -> None:
    alice, bob = bearer(components, "user_alice"), bearer(components, "user_bob")
    client.post("/jobs", json=SPEC, headers=bob)  # bob has jobs of his own
    job_ids = alices_jobs(client, components, alice)
    before = alices_view(client, alice, job_ids)
    method = route[0]
    missing_id = new_job_id()
    path, kwargs = JOB_ROUTES[route](missing_id)
    expected = normalized(client.request(method, path, headers=bob, **kwargs), missing_id)
    assert expected[0] in (403, 404)
    for job_id in job_ids:
        path, kwargs = JOB_ROUTES[route](job_id)
        assert normalized(client.request(method, path, headers=bob, **kwargs), job_id) == expected
    assert alices_view(client, alice, job_ids) == before


def test_listing_never_shows_another_users_jobs_whatever_the_filter_or_cursor(
    client: TestClient, components: Components
) -> None:
    alice, bob = bearer(components, "user_alice"), bearer(components, "user_bob")
    job_ids = alices_jobs(client, components, alice)
    first_page = client.get("/jobs", params={"limit": 1}, headers=alice).json()
    assert first_page["next_cursor"] is not None
    for params in [{}, {"limit": 100}, *({"status": status.value} for status in JobStatus)]:
        assert client.get("/jobs", params=params, headers=bob).json() == {"data": [], "next_cursor": None}
    # Alice's cursor in Bob's hands pages through Bob's jobs (none), never Alice's.
    response = client.get("/jobs", params={"cursor": first_page["next_cursor"]}, headers=bob)
    assert response.status_code in (200, 422)
    if response.status_code == 200:
        assert response.json()["data"] == []
    bobs = client.post("/jobs", json=SPEC, headers=bob).json()["id"]
    listed = [job["id"] for job in client.get("/jobs", params={"limit": 100}, headers=bob).json()["data"]]
    assert listed == [bobs] and not set(listed) & set(job_ids)


@pytest.mark.parametrize("route", list(KEY_ROUTES), ids=lambda route: f"{route[0]} {route[1]}")
def test_another_users_api_key_answers_exactly_like_a_missing_one_and_keeps_working(
    client: TestClient, components: Components, route: tuple[str, str]
) -> None:
    alice, bob = bearer(components, "user_alice"), bearer(components, "user_bob")
    created = client.post("/api-keys", json={"name": "alice's laptop"}, headers=alice).json()
    method = route[0]
    path, kwargs = KEY_ROUTES[route]("key_000000000000000000000000")
    expected = normalized(client.request(method, path, headers=bob, **kwargs), "key_000000000000000000000000")
    assert expected[0] == 404
    path, kwargs = KEY_ROUTES[route](created["id"])
    assert normalized(client.request(method, path, headers=bob, **kwargs), created["id"]) == expected
    assert client.get("/jobs", headers={"Authorization": f"Bearer {created['key']}"}).status_code == 200
    assert [key["id"] for key in client.get("/api-keys", headers=alice).json()["data"]] == [created["id"]]
