"""The whole local stack over HTTP: `robotrain serve` as a subprocess on a free port with a temp data dir, two users,
real training in worker processes, cancel, retry, bad input, and a kill -9 of the server mid-job.

The tests in this module run in order and share one server (and one data dir): starting Python with torch costs
seconds on this machine, so each training job here is small and there are as few as the checks allow."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from safetensors.numpy import load as load_safetensors

from robotrain.adapters.sqs_queue import create_queue_with_dlq
from robotrain.auth.local_keys import LocalKeys
from tests.support import moto

MOTO_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

pytestmark = pytest.mark.slow

INTERNAL_TOKEN = "e2e-internal-token"
BIN = Path(sys.executable).parent
# Small enough to train in seconds on a shared CPU, large enough to learn and to write checkpoints on the way.
FAST_SPEC: dict[str, Any] = {
    "name": "e2e push2d mlp",
    "policy": {"type": "mlp", "hidden_dims": [64, 64]},
    "dataset": {"uri": "builtin://push2d?episodes=30"},
    # Enough steps that the kill -9 below lands while the job is still training, even on a quiet machine.
    "training": {"steps": 600, "batch_size": 32, "checkpoint_every": 100, "log_every": 20, "device": "cpu"},
    "eval": {"env": "push2d", "episodes": 20},
    "compute": {"gpu": "T4", "timeout_minutes": 5},
}
# The job that waits in the queue behind the first one only has to run to the end: no evaluation.
QUEUED_SPEC: dict[str, Any] = {
    **FAST_SPEC,
    "name": "e2e queued",
    "training": {**FAST_SPEC["training"], "steps": 10},
    "eval": {"env": None},
}
LONG_SPEC: dict[str, Any] = {**FAST_SPEC, "name": "e2e long", "training": {**FAST_SPEC["training"], "steps": 200000}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def worker_pids(job_id: str) -> list[int]:
    """Live worker processes of this job (their command line names the job id)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            status = (entry / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if status != "Z" and b"robotrain.entrypoints.worker" in cmdline and job_id.encode() in cmdline:
            pids.append(int(entry.name))
    return pids


@dataclass
class Stack:
    data_dir: Path
    port: int
    log_path: Path
    process: subprocess.Popen | None = None
    job_ids: list[str] = field(default_factory=list)
    # Extra environment selecting cloud adapters (the Supabase store, the SQS queue); empty for embedded defaults.
    adapters_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ROBOTRAIN_", "CLERK_", "SUPABASE_", "SQS_"))}
        env.update(
            ROBOTRAIN_INTERNAL_TOKEN=INTERNAL_TOKEN,
            ROBOTRAIN_DRAIN_INTERVAL_S="0.5",
            ROBOTRAIN_PROGRESS_INTERVAL_S="0.5",
            ROBOTRAIN_HEARTBEAT_INTERVAL_S="1",
            ROBOTRAIN_HEARTBEAT_STALE_S="20",
            ROBOTRAIN_LOG_LEVEL="WARNING",
            # One BLAS thread per worker: this CPU is shared, and oversubscribed torch threads only slow it down.
            OMP_NUM_THREADS="1",
        )
        env.update(self.adapters_env)
        return env

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(BIN / "robotrain"), "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(self.data_dir)],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()

        def healthy() -> bool:
            assert self.process is not None and self.process.poll() is None, f"server exited:\n{self.log_tail()}"
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, 45, "the server to answer /healthz")

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""


class User:
    def __init__(self, stack: Stack, token: str):
        self.stack = stack
        self.headers = {"Authorization": f"Bearer {token}"}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.stack.url + path, headers=self.headers, timeout=30, **kwargs)

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        response = self.request("POST", "/jobs", json=spec)
        assert response.status_code == 202, response.text
        job = response.json()
        self.stack.job_ids.append(job["id"])
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.request("GET", f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_status(self, job_id: str, statuses: set[str], timeout_s: float) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["status"] in statuses else None

        try:
            return wait_for(reached, timeout_s, f"{job_id} to become {sorted(statuses)}")
        except AssertionError as exc:
            events = self.request("GET", f"/jobs/{job_id}/events").json()
            raise AssertionError(f"{exc}\njob: {self.job(job_id)}\nevents: {events}\n{self.stack.log_tail()}") from None


@pytest.fixture(scope="module", params=["embedded", "supabase+sqs"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The same checks on embedded defaults and on the production store and queue: the Supabase store through the
    PostgREST-subset server over real PostgreSQL, and SQS on a moto server (both on 127.0.0.1)."""
    root = tmp_path_factory.mktemp("e2e")
    adapters_env = cloud_adapters_env(request) if request.param == "supabase+sqs" else {}
    stack = Stack(data_dir=root / "data", port=_free_port(), log_path=root / "server.log", adapters_env=adapters_env)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
        # Workers run in their own sessions and outlive the server by design; end the ones this module started.
        for job_id in stack.job_ids:
            for pid in worker_pids(job_id):
                os.kill(pid, signal.SIGKILL)


def cloud_adapters_env(request: pytest.FixtureRequest) -> dict[str, str]:
    supabase = request.getfixturevalue("supabase_stack")
    supabase.truncate()
    moto_endpoint = request.getfixturevalue("moto_endpoint")
    queue_url, _ = create_queue_with_dlq(
        {"region": "us-east-1", "endpoint_url": moto_endpoint, **MOTO_CREDENTIALS},
        f"e2e-{uuid.uuid4().hex[:12]}",
        max_receive_count=5,
    )
    return {
        "SUPABASE_URL": supabase.url,
        "SUPABASE_KEY": supabase.service_key,
        "SQS_QUEUE_URL": queue_url,
        "AWS_ENDPOINT_URL_SQS": moto_endpoint,
        **moto.FAKE_CREDENTIALS,
    }


@pytest.fixture(scope="module")
def alice(stack: Stack) -> User:
    # Minted by the CLI, as a user would.
    out = subprocess.run(
        [str(BIN / "robotrain"), "token", "--user", "alice", "--data-dir", str(stack.data_dir)],
        env=stack.env(), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return User(stack, out.stdout.strip())


@pytest.fixture(scope="module")
def bob(stack: Stack) -> User:
    return User(stack, LocalKeys(stack.data_dir).mint("bob"))


def test_bad_tokens_are_401(stack: Stack, alice: User) -> None:
    other_keys = LocalKeys(stack.data_dir / "elsewhere").mint("alice")
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer nonsense"},
                    {"Authorization": f"Bearer {other_keys}"}, {"Authorization": f"Bearer {LocalKeys(stack.data_dir).mint('alice', ttl_s=1)}x"}):  # fmt: skip
        response = httpx.get(f"{stack.url}/jobs", headers=headers, timeout=10)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "unauthorized"
    assert httpx.get(f"{stack.url}/healthz", timeout=10).status_code == 200


def test_bad_bodies_are_422_naming_the_field_and_413(alice: User) -> None:
    response = alice.request("POST", "/jobs", json={**FAST_SPEC, "training": {"steps": -5}})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert ["body", "training", "steps"] in [detail["loc"] for detail in error["details"]]
    response = alice.request("POST", "/jobs", json={**FAST_SPEC, "name": "x" * (1024 * 1024 + 1)})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_train_isolate_kill_restart_and_drain_the_queue(stack: Stack, alice: User, bob: User) -> None:
    first = alice.submit(FAST_SPEC)
    queued = bob.submit(QUEUED_SPEC)

    # Neither user can see or touch the other's job, on any route.
    for owner, intruder, job in ((alice, bob, first), (bob, alice, queued)):
        for method, path in (("GET", ""), ("GET", "/events"), ("GET", "/metrics"), ("GET", "/artifacts"),
                             ("GET", "/artifacts/result.json"), ("POST", "/cancel"), ("POST", "/retry")):  # fmt: skip
            response = intruder.request(method, f"/jobs/{job['id']}{path}")
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"]["code"] == "job_not_found"
        assert job["id"] not in json.dumps(intruder.request("GET", "/jobs").json())
        assert owner.job(job["id"])["status"] in {"queued", "starting", "running"}

    # Kill -9 the server while the first job trains; the second is still queued behind it (one job at a time).
    alice.wait_status(first["id"], {"running"}, 60)
    wait_for(lambda: alice.job(first["id"])["progress"]["step"] > 0, 60, "the first progress report")
    assert bob.job(queued["id"])["status"] == "queued"
    assert alice.job(first["id"])["status"] == "running"  # the kill lands mid-job
    stack.kill9()
    stack.start()

    done = alice.wait_status(first["id"], {"succeeded", "failed", "cancelled"}, 120)
    assert done["status"] == "succeeded", done
    assert "pc_success" in done["result"]["eval"]
    assert 0.0 <= done["result"]["eval"]["pc_success"] <= 100.0
    assert done["progress"]["step"] == FAST_SPEC["training"]["steps"]

    artifacts = alice.request("GET", f"/jobs/{first['id']}/artifacts").json()["data"]
    models = [item for item in artifacts if item["path"].endswith("model.safetensors")]
    assert models, artifacts
    download = alice.request("GET", f"/jobs/{first['id']}/artifacts/{models[-1]['path']}")
    assert download.status_code == 200
    assert len(download.content) == models[-1]["size"]
    assert load_safetensors(download.content), "the checkpoint holds no tensors"
    assert alice.request("GET", f"/jobs/{first['id']}/artifacts/..%2F..%2Frobotrain.sqlite3").status_code == 404
    metrics = alice.request("GET", f"/jobs/{first['id']}/metrics").json()["series"]
    assert any(name.endswith("loss") and points for name, points in metrics.items()), metrics

    second = bob.wait_status(queued["id"], {"succeeded", "failed", "cancelled"}, 120)
    assert second["status"] == "succeeded", second


def test_cancel_a_running_job_then_retry_it(stack: Stack, alice: User) -> None:
    job = alice.submit(LONG_SPEC)
    alice.wait_status(job["id"], {"running"}, 60)
    pids = wait_for(lambda: worker_pids(job["id"]), 60, "the worker process")

    response = alice.request("POST", f"/jobs/{job['id']}/cancel")
    assert response.status_code == 200, response.text
    assert alice.wait_status(job["id"], {"cancelled"}, 10)["status"] == "cancelled"
    # generous: SIGTERM, then SIGKILL after the launcher's 10 s grace, on a loaded machine
    wait_for(lambda: not worker_pids(job["id"]), 60, f"worker {pids} to exit")
    assert alice.request("POST", f"/jobs/{job['id']}/cancel").status_code == 409

    retried = alice.request("POST", f"/jobs/{job['id']}/retry")
    assert retried.status_code == 202, retried.text
    new = retried.json()
    stack.job_ids.append(new["id"])
    assert new["retry_of"] == job["id"] and new["spec"] == job["spec"] and new["id"] != job["id"]
    # Not trained again here: cancelling it frees the machine (queued or starting, both cancel at once).
    assert alice.request("POST", f"/jobs/{new['id']}/cancel").status_code == 200
    wait_for(lambda: not worker_pids(new["id"]), 60, "the retry's worker to exit")


def test_the_jobs_live_in_the_selected_store(request: pytest.FixtureRequest, stack: Stack) -> None:
    """Guards against a silent fallback to SQLite when the cloud variables are set (and vice versa)."""
    sqlite_file = stack.data_dir / "robotrain.sqlite3"
    if not stack.adapters_env:
        assert sqlite_file.exists()
        return
    supabase = request.getfixturevalue("supabase_stack")
    rows = supabase.admin.execute("select id from public.jobs").fetchall()
    assert set(stack.job_ids) <= {row[0] for row in rows}
    assert not sqlite_file.exists()
