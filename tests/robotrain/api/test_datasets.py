"""The /datasets routes and dataset:// in job specs, in process over real embedded components: an upload is unpacked,
read and owned; it resolves only for its owner; the operator's source rules and limits answer 422 at submit; and
cookie-authenticated writes need an allowed Origin."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from robotrain.settings import Settings
from robotrain.wiring import build_components
from tests.robotrain.api.conftest import VALID_SPEC, seed_keys
from tests.support.app import api_app
from tests.support.datasets import pack
from training.data.sources import write_builtin_dataset

ORIGIN = "https://app.example.com"


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_builtin_dataset("push2d", tmp_path_factory.mktemp("push2d") / "ds", episodes=3, seed=1)


@pytest.fixture(scope="module")
def tgz(dataset_dir: Path) -> bytes:
    return pack(dataset_dir, dataset_dir.parent / "ds.tgz", top="push2d").read_bytes()


def upload(client: TestClient, headers: dict, body: bytes, media_type: str = "application/gzip", name: str = "demo"):
    return client.post(
        "/datasets", params={"name": name}, content=body, headers={**headers, "Content-Type": media_type}
    )


def spec_on(uri: str, **overrides) -> dict:
    return {**VALID_SPEC, "dataset": {"uri": uri}, **overrides}


def test_an_upload_is_read_summarised_and_owned(client: TestClient, alice, bob, tgz: bytes, dataset_dir: Path) -> None:
    response = upload(client, alice, tgz)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["uri"] == f"dataset://{created['id']}" and created["name"] == "demo"
    assert created["episodes"] == 3 and created["frames"] > 3 and created["bytes"] > 0
    assert created["features"]["observation.state"]["shape"] == [2]
    assert client.get(f"/datasets/{created['id']}", headers=alice).json() == created
    assert client.get("/datasets", headers=alice).json() == {"data": [created], "next_cursor": None}
    # Another user: the same 404 as a dataset that does not exist, and an empty list.
    missing = client.get("/datasets/ds_0000000000000000000000zzzz", headers=alice).json()["error"]
    other = client.get(f"/datasets/{created['id']}", headers=bob)
    assert other.status_code == 404 and other.json()["error"]["code"] == missing["code"] == "dataset_not_found"
    assert client.delete(f"/datasets/{created['id']}", headers=bob).status_code == 404
    assert client.get("/datasets", headers=bob).json() == {"data": [], "next_cursor": None}


def test_zip_and_plain_tar_with_the_dataset_at_the_top_are_taken(client: TestClient, alice, dataset_dir) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for path in sorted(dataset_dir.rglob("*")):
            if path.is_file():
                bundle.write(path, path.relative_to(dataset_dir).as_posix())
    assert upload(client, alice, buffer.getvalue(), "application/zip").status_code == 201
    plain = pack(dataset_dir, dataset_dir.parent / "top.tar.gz")  # "./meta/info.json" at the top
    assert upload(client, alice, plain.read_bytes(), "application/x-tar").status_code == 201


def test_a_dataset_used_by_an_active_job_cannot_be_deleted(client: TestClient, alice, tgz: bytes) -> None:
    dataset = upload(client, alice, tgz).json()
    job = client.post("/jobs", json=spec_on(dataset["uri"]), headers=alice)
    assert job.status_code == 202, job.text
    refused = client.delete(f"/datasets/{dataset['id']}", headers=alice)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "dataset_in_use"
    assert client.post(f"/jobs/{job.json()['id']}/cancel", headers=alice).status_code == 200
    assert client.delete(f"/datasets/{dataset['id']}", headers=alice).status_code == 204
    assert client.get(f"/datasets/{dataset['id']}", headers=alice).status_code == 404


def test_another_users_upload_is_refused_at_submit_exactly_like_a_missing_one(client, alice, bob, tgz) -> None:
    dataset = upload(client, alice, tgz).json()
    missing_id = "ds_" + "0" * 26
    theirs = client.post("/jobs", json=spec_on(dataset["uri"]), headers=bob)
    nobodys = client.post("/jobs", json=spec_on(f"dataset://{missing_id}"), headers=bob)
    assert theirs.status_code == nobodys.status_code == 422
    assert theirs.json()["error"]["code"] == "dataset_forbidden"
    assert theirs.json()["error"]["message"].replace(dataset["id"], "<id>") == nobodys.json()["error"][
        "message"
    ].replace(missing_id, "<id>")


def test_not_a_dataset_is_422_naming_the_file_relative_to_the_dataset(client, alice, dataset_dir, tmp_path) -> None:
    broken = tmp_path / "broken"
    (broken / "meta").mkdir(parents=True)
    (broken / "meta" / "info.json").write_text(json.dumps({"codebase_version": "v3.0", "fps": 10}))
    response = upload(client, alice, pack(broken, tmp_path / "b.tgz").read_bytes())
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "dataset_invalid"
    assert "meta/info.json: required field 'features' is missing" in error["message"]
    assert str(tmp_path) not in error["message"] and "/tmp" not in error["message"]
    assert upload(client, alice, b"not an archive").status_code == 422
    assert upload(client, alice, b"{}", "application/json").status_code == 415
    assert client.get("/datasets", headers=alice).json()["data"] == []


def test_uploads_have_their_own_size_limit_and_bypass_the_json_one(tmp_path: Path, key_dir: Path, tgz: bytes) -> None:
    seed_keys(key_dir, tmp_path / "data")
    settings = Settings(data_dir=tmp_path / "data", max_body_bytes=1024, max_upload_bytes=len(tgz) + 10)
    with TestClient(api_app(build_components(settings))) as client:
        from robotrain.auth.local_keys import LocalKeys

        alice = {"Authorization": f"Bearer {LocalKeys(settings.data_dir).mint('alice')}"}
        assert len(tgz) > 1024 and upload(client, alice, tgz).status_code == 201
        too_big = upload(client, alice, tgz + b"\0" * 20)
        assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "payload_too_large"
    assert not list((settings.resolved_datasets_dir / ".staging").iterdir())  # nothing left behind


@pytest.mark.parametrize(
    ("overrides", "code", "needle"),
    [
        ({"policy": {"type": "mlp", "hidden_dims": [10**12]}}, "limit_exceeded", "parameters; this service allows"),
        ({"training": {"steps": 10_000_000}}, "limit_exceeded", "training.steps is 10000000"),
        ({"training": {"steps": 1_000_000, "checkpoint_every": 1}}, "limit_exceeded", "training.checkpoint_every 1"),
        ({"dataset": {"uri": "builtin://push2d?episodes=100000"}}, "limit_exceeded", "100000 builtin episodes"),
        ({"eval": {"env": "push2d", "episodes": 1000, "every": 10}}, "limit_exceeded", "evaluation rollouts"),
        ({"dataset": {"uri": "file:///etc"}}, "dataset_forbidden", "ROBOTRAIN_FILE_DATASET_ROOTS"),
        ({"dataset": {"uri": "s3://some-bucket/data"}}, "dataset_forbidden", "ROBOTRAIN_S3_BUCKETS"),
    ],
)
def test_specs_over_the_operators_rules_are_422_naming_the_rule(client, alice, overrides, code, needle) -> None:
    response = client.post("/jobs", json={**VALID_SPEC, **overrides}, headers=alice)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code and needle in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "policy",
    [
        {"type": "diffusion", "down_dims": [9465992177879351296]},  # past int64: found by schemathesis (was a 500)
        {"type": "mlp", "hidden_dims": [2**40, 2**40]},  # each width allowed, their product past int64
        {"type": "mlp", "image_size": [10**6, 10**6]},
    ],
)
def test_networks_too_big_for_any_machine_are_a_422(client: TestClient, alice, policy) -> None:
    response = client.post("/jobs", json={**VALID_SPEC, "policy": policy}, headers=alice)
    assert response.status_code == 422, response.text


def test_infinity_and_nan_in_a_json_body_are_refused(client: TestClient, alice) -> None:
    body = json.dumps({**VALID_SPEC, "training": {"grad_clip": float("inf")}})  # the `Infinity` token
    response = client.post("/jobs", content=body, headers={**alice, "Content-Type": "application/json"})
    assert response.status_code == 422 and "finite" in response.text


@pytest.fixture
def cookie_client(tmp_path: Path, key_dir: Path):
    seed_keys(key_dir, tmp_path / "data")
    settings = Settings(data_dir=tmp_path / "data", cors_origins=[ORIGIN])
    with TestClient(api_app(build_components(settings))) as client:
        from robotrain.auth.local_keys import LocalKeys

        client.cookies.set("__session", LocalKeys(settings.data_dir).mint("alice"))
        yield client, LocalKeys(settings.data_dir).mint("alice")


def test_cookie_writes_need_an_allowed_origin_and_bearer_tokens_do_not(cookie_client) -> None:
    client, token = cookie_client
    for origin in (None, "https://evil.example", "null"):
        headers = {"Origin": origin} if origin else {}
        refused = client.post("/jobs", json=VALID_SPEC, headers=headers)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "origin_refused"
    assert client.get("/jobs").status_code == 200  # reads are not state changes
    assert client.post("/jobs", json=VALID_SPEC, headers={"Origin": ORIGIN}).status_code == 202
    client.cookies.clear()
    bearer = {"Authorization": f"Bearer {token}", "Origin": "https://evil.example"}
    assert client.post("/jobs", json=VALID_SPEC, headers=bearer).status_code == 202
