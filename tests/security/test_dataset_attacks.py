"""Issue #11, tried as an attacker would: `robotrain serve` on embedded defaults as a real process, moto's S3 on
127.0.0.1 as the S3 stand-in, two users. Every dataset source, upload archive, spec limit and cookie write below is
refused, and a fixture hashes the server's key directory, the installed packages (src/robotrain, training) and
everything around the server's data directory before and after each test: nothing outside the intended roots
changes. The last test is the quickstart: a dataset uploaded by the CLI and trained by its dataset:// URI, while the
worker's environment is read from /proc to show it holds none of the API's secrets.

One server for the module (its start and each worker process cost seconds on this machine)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import pytest

from robotrain import cli
from robotrain.auth.local_keys import LocalKeys
from tests.security.server import serve
from tests.support import moto
from tests.support.datasets import pack
from training.data.sources import write_builtin_dataset

REPO = Path(__file__).resolve().parents[2]
PACKAGES = (REPO / "src" / "robotrain", REPO / "training")
ORIGIN = "https://app.attack.example"
INTERNAL_TOKEN = "internal-secret-that-no-worker-may-see"
ALLOWED_BUCKET = "allowed-bucket"
MAX_UPLOAD = 1 << 20
MAX_DATASET = 2 << 20
FAST = {"steps": 20, "batch_size": 16, "checkpoint_every": 10, "log_every": 5, "device": "cpu"}


@dataclass
class Stack:
    url: str
    base: Path  # everything of this module: the server's tree, a shared dataset root, a directory outside
    data_dir: Path
    shared: Path  # an allowed file:// root
    outside: Path  # under no root: what an escape would reach
    alice: dict[str, str]
    bob: dict[str, str]
    token: str  # alice's bearer token
    s3_endpoint: str

    def post(self, path: str, user: dict[str, str], **kwargs) -> httpx.Response:
        return httpx.post(self.url + path, headers=user | kwargs.pop("headers", {}), timeout=60, **kwargs)

    def submit(self, user: dict[str, str], uri: str, **sections) -> httpx.Response:
        spec = {"policy": {"type": "mlp", "hidden_dims": [32, 32]}, "dataset": {"uri": uri}, "training": FAST}
        return self.post("/jobs", user, json=spec | sections)

    def upload(self, user: dict[str, str], body: bytes, media_type: str) -> httpx.Response:
        return self.post("/datasets", user, params={"name": "x"}, content=body, headers={"Content-Type": media_type})

    def job(self, user: dict[str, str], job_id: str) -> dict:
        return httpx.get(f"{self.url}/jobs/{job_id}", headers=user, timeout=30).json()

    def wait_until_finished(self, user: dict[str, str], job_id: str, timeout_s: float = 180) -> dict:
        deadline = time.monotonic() + timeout_s
        while (job := self.job(user, job_id))["status"] not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, f"{job_id} still {job['status']} after {timeout_s}s"
            time.sleep(0.3)
        return job


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, local_key_dir: Path, moto_endpoint: str) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("attacks")
    data_dir = base / "srv" / "data"
    shutil.copytree(local_key_dir, data_dir / "keys")
    shared, outside = base / "shared", base / "outside"
    write_builtin_dataset("push2d", shared / "pub", episodes=2, seed=0)
    outside.mkdir()
    (outside / "canary.txt").write_text("nothing may change me")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, **_aws_arguments())
    for bucket in (ALLOWED_BUCKET, "unlisted-bucket"):
        s3.create_bucket(Bucket=bucket)
    env = {
        "ROBOTRAIN_FILE_DATASET_ROOTS": f"{shared},{base / 'srv'}",
        "ROBOTRAIN_S3_BUCKETS": ALLOWED_BUCKET,
        "ROBOTRAIN_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
        "ROBOTRAIN_MAX_DATASET_BYTES": str(MAX_DATASET),
        "ROBOTRAIN_CORS_ORIGINS": ORIGIN,
        "ROBOTRAIN_INTERNAL_TOKEN": INTERNAL_TOKEN,
        "ROBOTRAIN_MAX_CONCURRENT_JOBS": "3",
        "ROBOTRAIN_MAX_RUNNING_JOBS_PER_USER": "3",
        "ROBOTRAIN_DRAIN_INTERVAL_S": "0.5",
        "ROBOTRAIN_PROGRESS_INTERVAL_S": "0.2",
        "ROBOTRAIN_CHECKPOINTS_KEPT": "1",
        "AWS_ENDPOINT_URL_S3": moto_endpoint,
        "OMP_NUM_THREADS": "1",
        **moto.FAKE_CREDENTIALS,
    }
    keys = LocalKeys(data_dir)
    token = keys.mint("user_alice")
    with serve(data_dir, env) as url:
        yield Stack(
            url=url,
            base=base,
            data_dir=data_dir,
            shared=shared,
            outside=outside,
            alice={"Authorization": f"Bearer {token}"},
            bob={"Authorization": f"Bearer {keys.mint('user_bob')}"},
            token=token,
            s3_endpoint=moto_endpoint,
        )


def _aws_arguments() -> dict[str, str]:
    return {
        "aws_access_key_id": moto.FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": moto.FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": moto.FAKE_CREDENTIALS["AWS_REGION"],
    }


def fingerprint(stack: Stack) -> dict[str, str]:
    """sha256 of every file (and the target of every link) in the key directory, the installed packages and the
    module's tree outside the server's data directory. Python's own bytecode caches are left out."""
    roots = [stack.data_dir / "keys", *PACKAGES, stack.base]
    seen: dict[str, str] = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if "__pycache__" in path.parts or (root == stack.base and path.is_relative_to(stack.data_dir)):
                continue
            if path.is_symlink():
                seen[str(path)] = "link:" + os.readlink(path)
            elif path.is_file():
                seen[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                seen[str(path)] = "dir"
    return seen


@pytest.fixture(autouse=True)
def nothing_outside_changes(stack: Stack) -> Iterator[None]:
    before = fingerprint(stack)
    yield
    after = fingerprint(stack)
    changed = sorted(set(before) ^ set(after) | {k for k in before.keys() & after.keys() if before[k] != after[k]})
    assert not changed, f"touched outside the intended roots: {changed[:10]}"


def error(response: httpx.Response) -> dict:
    return response.json()["error"]


# --- dataset sources ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "s3://allowed-bucket/../../../keys",
        "s3://allowed-bucket/%2e%2e/%2e%2e/%2e%2e/keys",
        "s3://allowed-bucket/data/..%2f..%2fkeys",
        "s3://allowed-bucket/data\\..\\..\\keys",
        "hf://org/name@../../../../keys",
        "dataset://ds_../../keys",
    ],
)
def test_prefix_and_revision_traversal_in_plain_or_encoded_form_is_refused_at_submit(stack: Stack, uri: str) -> None:
    response = stack.submit(stack.alice, uri)
    assert response.status_code == 422 and error(response)["code"] == "validation_error", response.text


def test_a_bucket_the_operator_does_not_list_is_refused(stack: Stack) -> None:
    response = stack.submit(stack.alice, "s3://unlisted-bucket/data")
    assert response.status_code == 422 and error(response)["code"] == "dataset_forbidden"
    assert "ROBOTRAIN_S3_BUCKETS" in error(response)["message"]


def test_file_uris_outside_the_roots_are_refused_alike_whether_or_not_they_exist(stack: Stack) -> None:
    (stack.shared / "escape").symlink_to(stack.outside)
    try:
        targets = [stack.outside, stack.outside / "missing", Path("/etc"), stack.shared / "escape"]
        messages = set()
        for target in targets:
            response = stack.submit(stack.alice, target.as_uri())
            assert response.status_code == 422 and error(response)["code"] == "dataset_forbidden"
            messages.add(error(response)["message"].replace(target.as_uri(), "<uri>"))
        assert len(messages) == 1  # no oracle: an existing directory, a missing one and a link all read the same
        # The service's own state is never a dataset, even under an allowed root (srv/ is one here).
        for target in (stack.data_dir / "keys", stack.data_dir, stack.data_dir.parent):
            response = stack.submit(stack.alice, target.as_uri())
            assert response.status_code == 422 and error(response)["code"] == "dataset_forbidden"
        assert stack.submit(stack.alice, (stack.shared / "pub").as_uri()).status_code == 202
    finally:
        (stack.shared / "escape").unlink()


# --- uploads --------------------------------------------------------------------------------------------------------


def _tar(members: Callable[[tarfile.TarFile], None], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        members(tar)
    return buffer.getvalue()


def _file(tar: tarfile.TarFile, name: str, data: bytes = b"planted") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _special(name: str, kind: bytes, target: str = "") -> Callable[[tarfile.TarFile], None]:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, target
        tar.addfile(info)

    return add


def _zip(names: list[str], *, symlink: bool = False, data: bytes = b"planted") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name in names:
            info = zipfile.ZipInfo(name)
            if symlink:
                info.external_attr = 0o120777 << 16
            bundle.writestr(info, data)
    return buffer.getvalue()


def hostile_archives(stack: Stack) -> dict[str, tuple[bytes, str, int]]:
    """name -> (body, media type, expected status)."""
    keys = str(stack.data_dir / "keys")
    depth = "../" * 12
    return {
        "tar slip": (
            _tar(lambda t: _file(t, f"{depth}{stack.outside.relative_to('/')}/evil")),
            "application/gzip",
            422,
        ),
        "tar absolute": (_tar(lambda t: _file(t, f"{stack.outside}/evil")), "application/gzip", 422),
        "tar symlink": (_tar(_special("meta", tarfile.SYMTYPE, keys)), "application/gzip", 422),
        "tar hard link": (_tar(_special("info.json", tarfile.LNKTYPE, f"{keys}/private.pem")), "application/gzip", 422),
        "tar device": (_tar(_special("dev", tarfile.CHRTYPE)), "application/x-tar", 422),
        "tar fifo": (_tar(_special("fifo", tarfile.FIFOTYPE), mode="w"), "application/x-tar", 422),
        "zip slip": (_zip([f"{depth}outside/evil"]), "application/zip", 422),
        "zip backslash slip": (_zip(["..\\..\\..\\outside\\evil"]), "application/zip", 422),
        "zip absolute": (_zip([f"{stack.outside}/evil"]), "application/zip", 422),
        "zip symlink": (_zip(["meta"], symlink=True, data=keys.encode()), "application/zip", 422),
        "zip bomb": (_zip(["meta/info.json"], data=b"\0" * (MAX_DATASET + 1)), "application/zip", 413),
        "over the upload limit": (os.urandom(MAX_UPLOAD + 1), "application/gzip", 413),
    }


def test_archives_that_escape_link_or_explode_are_refused_and_leave_nothing(stack: Stack) -> None:
    for name, (body, media_type, status) in hostile_archives(stack).items():
        response = stack.upload(stack.alice, body, media_type)
        assert response.status_code == status, f"{name}: {response.status_code} {response.text}"
        # The answer may echo the attacker's own member name, never where the server unpacks.
        assert str(stack.data_dir / "uploads") not in response.text and ".staging" not in response.text, name
    assert httpx.get(f"{stack.url}/datasets", headers=stack.alice).json()["data"] == []
    uploads = stack.data_dir / "uploads"
    assert not [p for p in uploads.rglob("*") if p.is_file()], "an upload left files behind"


def test_another_users_dataset_answers_exactly_like_a_missing_one(stack: Stack) -> None:
    created = stack.upload(
        stack.alice, pack(stack.shared / "pub", stack.base / "pub.tgz").read_bytes(), "application/gzip"
    )
    (stack.base / "pub.tgz").unlink()
    assert created.status_code == 201, created.text
    dataset = created.json()
    missing = "ds_" + "0" * 26
    theirs = httpx.get(f"{stack.url}/datasets/{dataset['id']}", headers=stack.bob)
    nobodys = httpx.get(f"{stack.url}/datasets/{missing}", headers=stack.bob)
    assert theirs.status_code == nobodys.status_code == 404
    assert error(theirs)["message"].replace(dataset["id"], "?") == error(nobodys)["message"].replace(missing, "?")
    assert httpx.delete(f"{stack.url}/datasets/{dataset['id']}", headers=stack.bob).status_code == 404
    assert httpx.get(f"{stack.url}/datasets", headers=stack.bob).json()["data"] == []
    theirs, nobodys = stack.submit(stack.bob, dataset["uri"]), stack.submit(stack.bob, f"dataset://{missing}")
    assert theirs.status_code == nobodys.status_code == 422
    assert error(theirs) == {**error(nobodys), "message": error(nobodys)["message"].replace(missing, dataset["id"])}
    assert httpx.delete(f"{stack.url}/datasets/{dataset['id']}", headers=stack.alice).status_code == 204


# --- limits, floats, cookies ----------------------------------------------------------------------------------------


def test_oversized_specs_and_non_finite_floats_are_refused_at_submit(stack: Stack) -> None:
    builtin = "builtin://push2d?episodes=4"
    over = [
        {"policy": {"type": "mlp", "hidden_dims": [10**12]}},
        {"training": {"steps": 5_000_000, "checkpoint_every": 1}},
        {"training": {**FAST, "steps": 1_000_000, "checkpoint_every": 1}},
        {"eval": {"env": "push2d", "episodes": 10_000}},
    ]
    for sections in over:
        response = stack.submit(stack.alice, builtin, **sections)
        assert response.status_code == 422 and error(response)["code"] == "limit_exceeded", response.text
    assert error(stack.submit(stack.alice, "builtin://push2d?episodes=100000"))["code"] == "limit_exceeded"
    dataset = f'"dataset": {{"uri": "{builtin}"}}'
    for field, body in (  # JSON parsers take the bare Infinity and NaN tokens
        ("grad_clip", f'{{"policy": {{"type": "mlp"}}, "training": {{"grad_clip": Infinity}}, {dataset}}}'),
        ("kl_weight", f'{{"policy": {{"type": "act", "kl_weight": NaN}}, {dataset}}}'),
        ("ema_power", f'{{"policy": {{"type": "diffusion", "ema_power": Infinity}}, {dataset}}}'),
        ("optimizer_betas", f'{{"policy": {{"type": "mlp", "optimizer_betas": [0.9, -Infinity]}}, {dataset}}}'),
    ):
        response = stack.post("/jobs", stack.alice, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 422 and field in response.text, (field, response.text)


def test_cookie_writes_need_an_allowed_origin(stack: Stack) -> None:
    cookie = {"Cookie": f"__session={stack.token}"}
    spec = {"policy": {"type": "mlp"}, "dataset": {"uri": "builtin://push2d?episodes=4"}, "training": FAST}
    for origin in ({}, {"Origin": "https://evil.example"}, {"Origin": "null"}):
        for method, path in (("POST", "/jobs"), ("DELETE", "/datasets/ds_" + "0" * 26), ("POST", "/jobs/x/cancel")):
            response = httpx.request(method, stack.url + path, headers=cookie | origin, json=spec)
            assert response.status_code == 403 and error(response)["code"] == "origin_refused", (method, path)
    assert httpx.get(f"{stack.url}/jobs", headers=cookie).status_code == 200
    job = httpx.post(f"{stack.url}/jobs", headers=cookie | {"Origin": ORIGIN}, json=spec)
    assert job.status_code == 202
    bearer = stack.alice | {"Origin": "https://evil.example"}
    assert httpx.post(f"{stack.url}/jobs/{job.json()['id']}/cancel", headers=bearer).status_code == 200


# --- in the worker --------------------------------------------------------------------------------------------------


def test_the_worker_refuses_escaping_keys_linked_files_and_oversized_prefixes_and_shows_no_host_paths(
    stack: Stack,
) -> None:
    s3 = boto3.client("s3", endpoint_url=stack.s3_endpoint, **_aws_arguments())
    for path in (stack.shared / "pub").rglob("*"):
        if path.is_file():
            s3.put_object(
                Bucket=ALLOWED_BUCKET, Key=f"data/{path.relative_to(stack.shared / 'pub')}", Body=path.read_bytes()
            )
    s3.put_object(Bucket=ALLOWED_BUCKET, Key="data/" + "../" * 12 + "keys/private.pem", Body=b"attacker's key")
    s3.put_object(Bucket=ALLOWED_BUCKET, Key="big/meta/info.json", Body=b"{}")
    s3.put_object(Bucket=ALLOWED_BUCKET, Key="big/data/blob", Body=b"\0" * (MAX_DATASET + 1))
    linked = stack.shared / "linked"
    shutil.copytree(stack.shared / "pub", linked)
    (linked / "meta" / "stats.json").unlink()
    (linked / "meta" / "stats.json").symlink_to(stack.data_dir / "keys" / "private.pem")
    try:
        jobs = [
            stack.submit(stack.alice, "s3://allowed-bucket/data"),
            stack.submit(stack.alice, linked.as_uri()),
            stack.submit(stack.alice, "s3://allowed-bucket/big"),
        ]
        assert [job.status_code for job in jobs] == [202, 202, 202], [job.text for job in jobs]
        finished = [stack.wait_until_finished(stack.alice, job.json()["id"]) for job in jobs]
    finally:
        shutil.rmtree(linked)
    assert [job["error"]["code"] for job in finished] == ["dataset_invalid", "dataset_invalid", "limit_exceeded"]
    assert "would escape the dataset directory" in finished[0]["error"]["message"]
    assert "meta/stats.json is a symlink that points outside the dataset" in finished[1]["error"]["message"]
    assert f"this service reads at most {MAX_DATASET:,}" in finished[2]["error"]["message"]  # before downloading
    for job in finished:
        events = httpx.get(f"{stack.url}/jobs/{job['id']}/events", headers=stack.alice).json()["data"]
        shown = json.dumps([job["error"], *events])
        assert str(stack.base) not in shown and "Traceback" not in shown


def test_quickstart_upload_by_the_cli_and_train_by_uri_with_a_least_privilege_worker(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = write_builtin_dataset("push2d", tmp_path / "my-push2d", episodes=4, seed=3)
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "name": "quickstart",
                "policy": {"type": "mlp", "hidden_dims": [32, 32]},
                "dataset": {"uri": str(local)},  # a local directory: the CLI uploads it and submits its dataset://
                "training": FAST,
                "eval": {"env": "push2d", "episodes": 2},
            }
        )
    )
    worker_environ: dict[str, str] = {}
    watcher = threading.Thread(target=_read_a_worker_environment, args=(stack, worker_environ), daemon=True)
    watcher.start()
    assert cli.main(["--url", stack.url, "--token", stack.token, "submit", str(spec), "--follow"]) == 0
    out = capsys.readouterr().out
    [uri] = set(re.findall(r"dataset://ds_[0-9a-z]{26}", out))
    assert "eval success rate:" in out and "checkpoint: checkpoints/000020" in out
    job_id = re.search(r"submitted (job_\w+)", out).group(1)
    assert stack.job(stack.alice, job_id)["spec"]["dataset"]["uri"] == uri
    artifacts = httpx.get(f"{stack.url}/jobs/{job_id}/artifacts", headers=stack.alice).json()["data"]
    kept = {item["path"].split("/")[1] for item in artifacts if item["path"].startswith("checkpoints/0")}
    assert kept == {"000020"}  # ROBOTRAIN_CHECKPOINTS_KEPT=1: step 10 was pruned (and 20 is also the best)
    watcher.join(timeout=30)
    assert worker_environ, "no worker process was seen"
    assert worker_environ.get("ROBOTRAIN_DATA_DIR") == str(stack.data_dir)
    assert "ROBOTRAIN_INTERNAL_TOKEN" not in worker_environ and INTERNAL_TOKEN not in json.dumps(worker_environ)
    assert not [name for name in worker_environ if name.startswith(("CLERK_", "ROBOTRAIN_CORS"))]
    assert cli.main(["--url", stack.url, "--token", stack.token, "datasets", "rm", uri.removeprefix("dataset://")]) == 0


def _read_a_worker_environment(stack: Stack, into: dict[str, str], timeout_s: float = 120) -> None:
    """Find this server's worker process in /proc and copy its environment (the test runs as the same user)."""
    deadline = time.monotonic() + timeout_s
    marker = f"ROBOTRAIN_DATA_DIR={stack.data_dir}".encode()
    while time.monotonic() < deadline and not into:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if b"robotrain.entrypoints.worker" not in (entry / "cmdline").read_bytes():
                    continue
                raw = (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker in raw.split(b"\0"):
                into.update(item.decode().split("=", 1) for item in raw.split(b"\0") if b"=" in item)
                return
        time.sleep(0.05)
