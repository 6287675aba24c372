"""How many round trips each API request makes to the store and to the queue (issue #13), on both deployments: the
embedded one (SQLite store, SQLite queue, local keys) and the cloud one (Supabase through the PostgREST-subset server
over PostgreSQL 15, SQS on moto's server, Clerk keys from a JWKS on 127.0.0.1). In production each round trip is a
network hop of milliseconds, so these counts, not Python speed, set the latency users see."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from robotrain.adapters.sqs_queue import create_queue_with_dlq, make_client
from robotrain.auth.local_keys import LocalKeys
from robotrain.jobs.models import MetricPoint
from robotrain.ports import Components
from robotrain.settings import Settings
from robotrain.wiring import build_components
from tests.robotrain.api.conftest import VALID_SPEC, seed_keys
from tests.support import moto
from tests.support.app import api_app
from tests.support.jwks_server import JwksServer, rsa_key
from tests.support.postgrest import PostgrestSubset
from tests.support.round_trips import RoundTrips, counting_round_trips

ISSUER = "https://clerk.round-trips.test"


@dataclass
class Deployment:
    client: TestClient
    components: Components
    alice: dict[str, str]
    postgrest: PostgrestSubset | None = None
    jwks: JwksServer | None = None

    def trips(self):
        return counting_round_trips(self.components, postgrest=self.postgrest)


@pytest.fixture(scope="module")
def signing_key():
    return rsa_key()


@pytest.fixture(params=["embedded", "cloud"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path, key_dir: Path, signing_key) -> Iterator[Deployment]:
    if request.param == "embedded":
        seed_keys(key_dir, tmp_path / "data")
        components = build_components(Settings(data_dir=tmp_path / "data"))
        alice = {"Authorization": f"Bearer {LocalKeys(tmp_path / 'data').mint('alice')}"}
        with TestClient(api_app(components)) as client:
            yield Deployment(client, components, alice)
        return
    supabase = request.getfixturevalue("supabase")
    endpoint = request.getfixturevalue("aws_env")
    moto.reset(endpoint)
    queue_url, _ = create_queue_with_dlq(
        make_client(region="us-east-1", endpoint_url=endpoint), "round-trips", max_receive_count=5
    )
    with JwksServer() as jwks:
        jwks.publish(signing_key)
        settings = Settings(
            _env_file=None,
            data_dir=tmp_path / "data",
            SUPABASE_URL=supabase.url,
            SUPABASE_KEY=supabase.service_key,
            SQS_QUEUE_URL=queue_url,
            AWS_REGION="us-east-1",
            AWS_ENDPOINT_URL_SQS=endpoint,
            CLERK_JWKS_URL=jwks.frontend_url,
            CLERK_ISSUER=ISSUER,
        )
        components = build_components(settings)
        alice = {"Authorization": f"Bearer {signing_key.mint(sub='alice', iss=ISSUER)}"}
        with TestClient(api_app(components)) as client:
            yield Deployment(client, components, alice, postgrest=supabase.subset, jwks=jwks)
        components.store.close()


def counts(trips: RoundTrips) -> tuple[int, int]:
    return len(trips.store), len(trips.queue)


def test_a_submit_is_one_store_round_trip_and_one_send(deployment: Deployment) -> None:
    client, alice = deployment.client, deployment.alice
    assert client.get("/jobs", headers=alice).status_code == 200  # keys fetched and cached, connections open
    with deployment.trips() as trips:
        answer = client.post("/jobs", json=VALID_SPEC, headers=alice | {"Idempotency-Key": "k1"})
    assert answer.status_code == 202, answer.text
    assert counts(trips) == (1, 1), trips
    with deployment.trips() as trips:
        replay = client.post("/jobs", json=VALID_SPEC, headers=alice | {"Idempotency-Key": "k1"})
    assert replay.json()["id"] == answer.json()["id"]
    assert counts(trips) == (1, 0), trips  # a replay sends nothing


def test_each_read_is_one_store_round_trip(deployment: Deployment) -> None:
    client, alice = deployment.client, deployment.alice
    jobs = [client.post("/jobs", json=VALID_SPEC, headers=alice).json() for _ in range(3)]
    job_id = jobs[0]["id"]
    deployment.components.store.append_metrics(job_id, [MetricPoint(step=1, name="train/loss", value=0.5)])
    cursor = client.get("/jobs?limit=1", headers=alice).json()["next_cursor"]
    reads = {
        "job": f"/jobs/{job_id}",
        "list": "/jobs",
        "list with a cursor and a status": f"/jobs?limit=1&status=queued&cursor={cursor}",
        "events": f"/jobs/{job_id}/events",
        "metrics": f"/jobs/{job_id}/metrics",
        "another user's events": "/jobs/job_00000000000000000000000000/events",
    }
    for name, path in reads.items():
        with deployment.trips() as trips:
            answer = client.get(path, headers=alice)
        assert answer.status_code in (200, 404), (name, answer.text)
        assert counts(trips) == (1, 0), (name, str(trips))
    assert client.get(f"/jobs/{job_id}/metrics", headers=alice).json()["series"] == {"train/loss": [[1, 0.5]]}


def test_authentication_fetches_keys_once_and_then_makes_no_round_trip(deployment: Deployment) -> None:
    client, alice = deployment.client, deployment.alice
    for _ in range(3):
        with deployment.trips() as trips:
            assert client.get("/jobs/job_00000000000000000000000000", headers=alice).status_code == 404
        assert counts(trips) == (1, 0), trips  # the job read only
    if deployment.jwks is not None:
        assert deployment.jwks.fetches == 1
