"""The app's lifetime: the dispatch loop runs only inside the lifespan, and a hand-driven drain launches a real
worker that a cancel through the API stops."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from robotrain.api.app import create_app
from robotrain.dispatch import Dispatcher
from robotrain.jobs.models import JobStatus
from robotrain.settings import Settings
from robotrain.wiring import Components
from tests.robotrain.api.conftest import VALID_SPEC


def test_dispatch_loop_runs_for_the_lifespan_only(settings: Settings, components: Components) -> None:
    app = create_app(settings, components=components, start_dispatch=True)
    loop = app.state.dispatch_loop
    assert not loop.running
    with TestClient(app):
        assert loop.running
    assert not loop.running


def test_without_dispatch_there_is_no_loop(client: TestClient) -> None:
    assert client.app.state.dispatch_loop is None


def test_cancel_through_the_api_stops_the_launched_worker(
    client: TestClient, alice: dict[str, str], components: Components
) -> None:
    job_id = client.post("/jobs", json={**VALID_SPEC, "training": {"steps": 100000}}, headers=alice).json()["id"]
    report = Dispatcher(components).drain_once()
    assert report is not None
    job = components.store.get(job_id)
    assert job is not None and job.status is JobStatus.STARTING and job.launch_handle
    assert components.launcher.is_alive(job.launch_handle)

    response = client.post(f"/jobs/{job_id}/cancel", headers=alice)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    deadline = time.monotonic() + 15
    while components.launcher.is_alive(job.launch_handle):
        assert time.monotonic() < deadline, "the worker outlived its cancel"
        time.sleep(0.1)
