"""The webhook routes: register (201 with a whsec_ secret), list, read, rotate, delete, deliveries, redeliver; URLs
checked; another user's endpoint is 404 everywhere."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from robotrain.ports import Components
from robotrain.settings import Settings
from robotrain.wiring import build_components
from tests.robotrain.adapters.webhook_contract import delivery
from tests.support.app import api_app

RECEIVER = "http://127.0.0.1:9/hooks"  # never called here: registration only resolves it


@pytest.fixture
def private_ok(settings: Settings) -> Iterator[tuple[TestClient, Components]]:
    components = build_components(settings.model_copy(update={"webhook_allow_private": True}))
    with TestClient(api_app(components)) as client:
        yield client, components


def test_registering_answers_201_with_a_secret_and_lists_without_it(private_ok, alice, bob) -> None:
    client, _ = private_ok
    created = client.post("/webhooks", json={"url": RECEIVER, "events": ["job.succeeded"]}, headers=alice)
    assert created.status_code == 201
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["events"] == ["job.succeeded"] and body["url"] == RECEIVER
    everything = client.post("/webhooks", json={"url": RECEIVER}, headers=alice).json()
    assert everything["events"] == ["job.running", "job.succeeded", "job.failed", "job.cancelled"]

    listing = client.get("/webhooks", headers=alice).json()["data"]
    assert [hook["id"] for hook in listing] == [body["id"], everything["id"]]
    assert all("secret" not in hook for hook in listing)
    assert client.get("/webhooks", headers=bob).json()["data"] == []

    rotated = client.post(f"/webhooks/{body['id']}/rotate-secret", headers=alice).json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != body["secret"]
    for method, path in (
        ("GET", f"/webhooks/{body['id']}"),
        ("POST", f"/webhooks/{body['id']}/rotate-secret"),
        ("GET", f"/webhooks/{body['id']}/deliveries"),
        ("DELETE", f"/webhooks/{body['id']}"),
    ):
        refused = client.request(method, path, headers=bob)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "webhook_not_found", path
    assert client.delete(f"/webhooks/{body['id']}", headers=alice).status_code == 204
    assert client.get(f"/webhooks/{body['id']}", headers=alice).status_code == 404


def test_urls_are_checked_at_registration(client: TestClient, alice) -> None:
    for url, code in (
        ("http://127.0.0.1:9/hooks", "webhook_url_refused"),
        ("https://127.0.0.1/hooks", "webhook_url_refused"),
        ("https://169.254.169.254/latest", "webhook_url_refused"),
        ("not a url", "webhook_url_refused"),
    ):
        refused = client.post("/webhooks", json={"url": url}, headers=alice)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == code, url
    unknown = client.post("/webhooks", json={"url": "https://x.example", "events": ["job.exploded"]}, headers=alice)
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "validation_error"


def test_deliveries_are_listed_with_their_attempts_and_can_be_redelivered(private_ok, alice, bob) -> None:
    client, components = private_ok
    hook = client.post("/webhooks", json={"url": RECEIVER}, headers=alice).json()
    assert components.webhooks is not None
    sent = delivery(hook["id"], 42)
    components.webhooks.add_deliveries([sent])
    listed = client.get(f"/webhooks/{hook['id']}/deliveries", headers=alice).json()["data"]
    assert [(d["id"], d["webhook_id"], d["status"]) for d in listed] == [(sent.id, "msg_42", "pending")]
    again = client.post(f"/webhooks/{hook['id']}/deliveries/{sent.id}/redeliver", headers=alice)
    assert again.status_code == 202 and again.json()["status"] == "pending"
    assert client.post(f"/webhooks/{hook['id']}/deliveries/{sent.id}/redeliver", headers=bob).status_code == 404
    missing = client.post(f"/webhooks/{hook['id']}/deliveries/whd_nope/redeliver", headers=alice)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "delivery_not_found"
