"""The app's lifetime: what runs beside it (the local dispatch loop) runs only inside the lifespan, and a hand-driven
drain launches a real worker that a cancel through the API stops."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from robotrain.control import Dispatcher, DispatchLoop
from robotrain.entrypoints.local import local_app
from robotrain.jobs.models import JobStatus
from robotrain.ports import Components
from robotrain.settings import Settings
from tests.robotrain.api.conftest import VALID_SPEC
from tests.support.app import api_app


def test_the_dispatch_loop_runs_for_the_lifespan_only(components: Components) -> None:
    loop = DispatchLoop(Dispatcher(components), interval_s=60)
    app = api_app(components, kick=loop.kick, background=[loop])
    assert not loop.running
    with TestClient(app):
        assert loop.running
    assert not loop.running


def test_the_local_service_dispatches_a_submit_at_once(settings: Settings, alice: dict[str, str]) -> None:
    # The loop's own interval is an hour: only the submit's kick can have the job claimed.
    app = local_app(settings.model_copy(update={"drain_interval_s": 3600.0}))
    with TestClient(app) as client:
        job_id = client.post("/jobs", json={**VALID_SPEC, "training": {"steps": 100000}}, headers=alice).json()["id"]
        deadline = time.monotonic() + 30
        while client.get(f"/jobs/{job_id}", headers=alice).json()["status"] == "queued":
            assert time.monotonic() < deadline, "the submit's kick never reached the dispatch loop"
            time.sleep(0.05)
        assert client.post(f"/jobs/{job_id}/cancel", headers=alice).json()["status"] == "cancelled"


def test_cancel_through_the_api_stops_the_launched_worker(
    client: TestClient, alice: dict[str, str], components: Components
) -> None:
    job_id = client.post("/jobs", json={**VALID_SPEC, "training": {"steps": 100000}}, headers=alice).json()["id"]
    report = Dispatcher(components).drain_once()
    assert report.launched == [job_id]
    job = components.store.get(job_id)
    assert job is not None and job.status is JobStatus.STARTING and job.launch_handle
    assert components.launcher.is_alive(job.launch_handle)

    response = client.post(f"/jobs/{job_id}/cancel", headers=alice)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    deadline = time.monotonic() + 60  # generous: SIGTERM, then SIGKILL after the launcher's 10 s grace
    while components.launcher.is_alive(job.launch_handle):
        assert time.monotonic() < deadline, "the worker outlived its cancel"
        time.sleep(0.1)
