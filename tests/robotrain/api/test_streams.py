"""The event streams over HTTP: GET /jobs/{id}/events and GET /jobs with `Accept: text/event-stream`, through the
real app, SQLite store and sse-starlette (httpx-sse reads them as a client would)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx_sse import connect_sse

from robotrain.auth.local_keys import LocalKeys
from robotrain.jobs.lifecycle import apply_transition
from robotrain.jobs.models import EventKind, Job, JobStatus, MetricPoint, Progress
from robotrain.jobs.service import JobService
from robotrain.ports import Components
from robotrain.settings import Settings
from robotrain.wiring import build_components
from tests.robotrain.api.conftest import VALID_SPEC, seed_keys
from tests.support.app import api_app
from training.spec import TrainSpec

SSE = {"Accept": "text/event-stream"}


@pytest.fixture
def live(tmp_path: Path, key_dir: Path) -> Iterator[tuple[TestClient, Components, LocalKeys]]:
    seed_keys(key_dir, tmp_path / "data")
    settings = Settings(
        data_dir=tmp_path / "data", stream_poll_interval_s=0.05, stream_keepalive_s=0.1, stream_max_s=0.6
    )
    components = build_components(settings)
    with TestClient(api_app(components)) as client:
        yield client, components, LocalKeys(settings.data_dir)


def bearer(keys: LocalKeys, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys.mint(user)}"}


def finished_job(components: Components, user: str = "alice") -> Job:
    """A job that ran to the end: queued, starting, running with metrics and a log line, succeeded."""
    store = components.store
    job = JobService(components).submit(user, TrainSpec.model_validate(VALID_SPEC))
    starting = store.claim(job.id, max_active=5, max_active_per_user=5)
    assert starting is not None
    store.append_event(job.id, EventKind.STATUS, "starting", {"status": "starting"})
    running = apply_transition(store, starting, JobStatus.RUNNING)
    assert running is not None
    store.append_metrics(job.id, [MetricPoint(step=s, name="train/loss", value=1.0 / s) for s in (10, 20)])
    store.append_metrics(job.id, [MetricPoint(step=20, name="train/lr", value=float("nan"))])
    store.append_event(job.id, EventKind.LOG, "checkpoint saved at step 20", {"step": 20})
    done = apply_transition(
        store, running, JobStatus.SUCCEEDED, progress=Progress(step=20, total_steps=20), result={"eval": {}}
    )
    assert done is not None
    return done


def read(client: TestClient, path: str, headers: dict[str, str]) -> list[tuple[str, Any, str]]:
    with connect_sse(client, "GET", path, headers=headers) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        return [(event.event, json.loads(event.data), event.id) for event in source.iter_sse() if event.data]


def test_a_job_stream_sends_status_logs_metrics_and_the_job_then_ends(live) -> None:
    client, components, keys = live
    job = finished_job(components)
    events = read(client, f"/jobs/{job.id}/events", {**SSE, **bearer(keys, "alice")})
    kinds = [kind for kind, _, _ in events]
    statuses = [data["data"]["status"] for kind, data, _ in events if kind == "status"]
    assert statuses == ["queued", "starting", "running", "succeeded"]
    assert "log" in kinds and kinds[-1] == "end" and kinds[-2] == "job"
    series: dict[str, list] = {}
    for kind, data, _ in events:
        if kind == "metrics":
            for name, points in data["series"].items():
                series.setdefault(name, []).extend(points)
    assert series == {"train/loss": [[10, 0.1], [20, 0.05]], "train/lr": [[20, None]]}  # NaN arrives as null
    snapshot = [data for kind, data, _ in events if kind == "job"][-1]
    assert snapshot["status"] == "succeeded" and "launch_handle" not in snapshot
    assert all(event_id for _, _, event_id in events)


def test_a_stream_resumes_after_last_event_id_and_a_finished_one_answers_204(live) -> None:
    client, components, keys = live
    job = finished_job(components)
    alice = {**SSE, **bearer(keys, "alice")}
    first = read(client, f"/jobs/{job.id}/events", alice)
    running_id = next(event_id for kind, data, event_id in first if kind == "status" and data["message"] == "running")
    rest = read(client, f"/jobs/{job.id}/events", {**alice, "Last-Event-ID": running_id})
    assert [data["message"] for kind, data, _ in rest if kind in ("status", "log")] == [
        "checkpoint saved at step 20",
        "succeeded",
    ]
    assert not any(kind == "metrics" and "train/loss" not in data["series"] for kind, data, _ in rest)
    final_id = first[-1][2]
    assert client.get(f"/jobs/{job.id}/events", headers={**alice, "Last-Event-ID": final_id}).status_code == 204
    refused = client.get(f"/jobs/{job.id}/events", headers={**alice, "Last-Event-ID": "nonsense"})
    assert refused.status_code == 422


def test_another_users_stream_is_404_and_json_stays_json(live) -> None:
    client, components, keys = live
    job = finished_job(components)
    other = client.get(f"/jobs/{job.id}/events", headers={**SSE, **bearer(keys, "bob")})
    assert other.status_code == 404 and other.json()["error"]["code"] == "job_not_found"
    assert client.get(f"/jobs/{job.id}/events", headers=SSE).status_code == 401
    plain = client.get(f"/jobs/{job.id}/events", headers=bearer(keys, "alice"))
    assert plain.headers["content-type"] == "application/json" and len(plain.json()["data"]) == 5


def test_a_running_jobs_stream_sends_keep_alives_and_ends_at_the_time_limit(live) -> None:
    client, components, keys = live
    job = JobService(components).submit("alice", TrainSpec.model_validate(VALID_SPEC))
    with client.stream("GET", f"/jobs/{job.id}/events", headers={**SSE, **bearer(keys, "alice")}) as response:
        body = "".join(response.iter_text())
    assert ": ping" in body  # sse-starlette's keep-alive comment
    assert "event: end" not in body  # the job has not ended; the client reconnects with Last-Event-ID


def test_the_job_list_stream_sends_only_the_users_changes(live) -> None:
    client, components, keys = live
    service = JobService(components)
    mine = service.submit("alice", TrainSpec.model_validate(VALID_SPEC))
    service.submit("bob", TrainSpec.model_validate(VALID_SPEC))
    service.cancel("alice", mine.id)
    events = read(client, "/jobs", {**SSE, **bearer(keys, "alice")})
    assert events and {data["id"] for _, data, _ in events} == {mine.id}
    assert events[-1][1]["status"] == "cancelled" and all(kind == "job" for kind, _, _ in events)
    listing = client.get("/jobs", headers=bearer(keys, "alice")).json()
    assert [job["id"] for job in listing["data"]] == [mine.id]
