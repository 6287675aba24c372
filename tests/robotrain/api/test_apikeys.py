"""Personal API keys over HTTP: created with a session, shown once, listed without secrets, accepted as a bearer
token for the same user everywhere, unable to create more keys, refused once revoked."""

from __future__ import annotations

from robotrain.apikeys.models import hash_secret
from tests.robotrain.api.conftest import VALID_SPEC


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def create_key(client, headers, **body) -> dict:
    response = client.post("/api-keys", json={"name": "laptop", **body}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_creating_a_key_answers_201_with_its_secret_once(client, alice) -> None:
    created = create_key(client, alice, expires_in_days=30)

    assert set(created) == {"id", "name", "key", "created_at", "expires_at"}
    assert created["key"].startswith("rt_") and created["name"] == "laptop"
    assert created["expires_at"] is not None
    listed = client.get("/api-keys", headers=alice).json()["data"]
    assert listed == [{k: created[k] for k in ("id", "name", "created_at", "expires_at")}]
    assert created["key"] not in client.get("/api-keys", headers=alice).text


def test_the_secret_is_stored_only_as_its_hash(client, alice, components, settings) -> None:
    created = create_key(client, alice)
    database = b"".join(path.read_bytes() for path in settings.data_dir.glob("robotrain.sqlite3*"))  # and its WAL
    assert created["key"].encode() not in database
    assert hash_secret(created["key"]).encode() in database


def test_a_key_acts_as_its_user_on_every_route(client, alice, bob) -> None:
    key = bearer(create_key(client, alice)["key"])

    job = client.post("/jobs", json=VALID_SPEC, headers=key)
    assert job.status_code == 202, job.text
    assert job.json()["user_id"] == "alice"
    assert client.get(f"/jobs/{job.json()['id']}", headers=alice).status_code == 200
    assert client.get(f"/jobs/{job.json()['id']}", headers=bob).status_code == 404
    assert [j["id"] for j in client.get("/jobs", headers=key).json()["data"]] == [job.json()["id"]]


def test_an_api_key_cannot_create_api_keys(client, alice) -> None:
    key = bearer(create_key(client, alice)["key"])
    response = client.post("/api-keys", json={"name": "another"}, headers=key)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "api_key_not_allowed"
    assert len(client.get("/api-keys", headers=key).json()["data"]) == 1


def test_a_revoked_key_gets_401_at_once(client, alice) -> None:
    created = create_key(client, alice)
    key = bearer(created["key"])
    assert client.get("/jobs", headers=key).status_code == 200  # verified, and cached in this process

    assert client.delete(f"/api-keys/{created['id']}", headers=alice).status_code == 204

    response = client.get("/jobs", headers=key)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/api-keys", headers=alice).json()["data"] == []


def test_keys_are_isolated_per_user(client, alice, bob) -> None:
    created = create_key(client, alice)
    assert client.get("/api-keys", headers=bob).json()["data"] == []
    response = client.delete(f"/api-keys/{created['id']}", headers=bob)
    assert response.status_code == 404 and response.json()["error"]["code"] == "api_key_not_found"
    assert client.get("/jobs", headers=bearer(created["key"])).status_code == 200


def test_a_forged_key_and_a_key_in_the_cookie_are_refused(client, alice) -> None:
    created = create_key(client, alice)
    forged = created["key"][:-4] + ("AAAA" if not created["key"].endswith("AAAA") else "BBBB")
    assert client.get("/jobs", headers=bearer(forged)).status_code == 401
    client.cookies.set("__session", created["key"])
    try:
        assert client.get("/jobs").status_code == 401  # API keys go in the Authorization header only
    finally:
        client.cookies.clear()


def test_bad_key_requests_are_4xx(client, alice) -> None:
    for body in ({}, {"name": ""}, {"name": "x" * 101}, {"name": "ok", "expires_in_days": 0}, {"name": "ok", "x": 1}):
        assert client.post("/api-keys", json=body, headers=alice).status_code == 422, body
    assert client.post("/api-keys", json={"name": "anonymous"}).status_code == 401
    assert client.delete("/api-keys/key_missing", headers=alice).status_code == 404
