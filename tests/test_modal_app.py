"""modal_app.py offline: importing it needs no token and no network, each Modal command picks the app it is meant for
(resolved by Modal's own CLI code), each function is declared as designed, and the function bodies run locally
(`.local()`) against the embedded adapters, training for real on CPU.

Modal itself cannot run here, so three Modal objects are replaced at the module level by in-repo fakes
(tests/support/modal_fakes.py) that record what the code asks of them: the Volume (commit/reload), the `train`
function when the drain spawns it, and the `drain` function when a submit or a finished attempt kicks it. Everything
else is real."""

from __future__ import annotations

import importlib
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from robotrain.auth.local_keys import LocalKeys
from robotrain.jobs.models import JobStatus
from robotrain.settings import Settings
from robotrain.wiring import build_components
from tests.support.modal_fakes import FakeFunction, FakeVolume

# `.local()` warns that mounted volumes are not available locally: expected, the Volume is the fake below.
pytestmark = pytest.mark.filterwarnings("ignore:The .* function is executing locally:UserWarning")

TINY_SPEC: dict[str, Any] = {
    "name": "modal local",
    "policy": {"type": "mlp", "hidden_dims": [32, 32]},
    "dataset": {"uri": "builtin://push2d?episodes=5"},
    "training": {"steps": 20, "batch_size": 16, "checkpoint_every": 10, "log_every": 5, "device": "cpu"},
    "eval": {"env": "push2d", "episodes": 4},
    "compute": {"gpu": "H100", "timeout_minutes": 7},
}
STORE_SECRET = "modal.Secret.from_name('robotrain-store')"
QUEUE_SECRET = "modal.Secret.from_name('robotrain-queue')"
API_SECRET = "modal.Secret.from_name('robotrain-api')"
CLOUD_VARIABLES = (
    "SUPABASE_URL",
    "SUPABASE_KEY",
    "SQS_QUEUE_URL",
    "CLERK_JWT_KEY",
    "CLERK_JWKS_URL",
    "CLERK_PUBLISHABLE_KEY",
    "CLERK_SECRET_KEY",
    "ROBOTRAIN_LAUNCHER",
    "ROBOTRAIN_DEFAULT_GPU",
)


@pytest.fixture(scope="module")
def modal_app() -> types.ModuleType:
    sys.modules.pop("modal_app", None)
    return importlib.import_module("modal_app")


@pytest.fixture
def local_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The environment a container would have, pointed at the embedded adapters in a temp dir."""
    for name in CLOUD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ROBOTRAIN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ROBOTRAIN_ARTIFACTS_DIR", str(tmp_path / "volume" / "jobs"))
    monkeypatch.setenv("ROBOTRAIN_DATASET_CACHE_DIR", str(tmp_path / "datasets"))
    monkeypatch.setenv("ROBOTRAIN_DRAIN_RECEIVE_WAIT_S", "0")  # the embedded queue needs no long poll
    return Settings()


@pytest.fixture
def fakes(modal_app: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    volume, train, drain = FakeVolume(), FakeFunction(), FakeFunction()
    real = {"train": modal_app.train, "drain": modal_app.drain, "api": modal_app.api}
    monkeypatch.setattr(modal_app, "volume", volume)
    monkeypatch.setattr(modal_app, "train", train)
    monkeypatch.setattr(modal_app, "drain", drain)
    return {"volume": volume, "train": train, "drain": drain, "real": real}


# --- declarations ------------------------------------------------------------------------------------------------


def test_the_gpu_worker_covers_a_default_job_and_survives_preemption(modal_app):
    info = modal_app.train.info()

    assert info.gpus == [("A10G", 1)]
    assert info.timeout >= 60 * 60
    assert info.max_retries >= 3
    assert info.single_use_containers is True
    assert {path: mount.name for path, mount in info.volumes.items()} == {"/artifacts": "robotrain-artifacts"}
    assert info.secrets == [STORE_SECRET, QUEUE_SECRET]  # what it reports status with, nothing else


def test_the_drain_runs_every_minute_without_a_gpu(modal_app):
    info = modal_app.drain.info()

    assert info.schedule == "Period(minutes=1)"
    assert info.gpus == []
    assert info.max_retries is None
    assert "/artifacts" in info.volumes
    assert info.secrets == [STORE_SECRET, QUEUE_SECRET]


def test_the_api_is_a_web_endpoint_with_the_volume_and_secret(modal_app):
    info = modal_app.api.info()

    assert info.web_info is not None
    assert info.gpus == []
    assert "/artifacts" in info.volumes
    assert info.secrets == [STORE_SECRET, QUEUE_SECRET, API_SECRET]  # only the API verifies users


def test_the_default_gpu_comes_from_settings(monkeypatch):
    monkeypatch.setenv("ROBOTRAIN_DEFAULT_GPU", "L4")
    sys.modules.pop("modal_app", None)
    try:
        reloaded = importlib.import_module("modal_app")
        assert reloaded.train.info().gpus == [("L4", 1)]
    finally:
        sys.modules.pop("modal_app", None)


# --- what each Modal command creates -------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def modal_cli_import(monkeypatch: pytest.MonkeyPatch):
    """Modal's CLI resolution of a file reference, run here on modal_app.py. The CLI imports the file itself (and
    registers it in sys.modules and sys.path), so both are restored afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setitem(sys.modules, "modal_app", sys.modules.get("modal_app"))
    from modal.cli import import_refs

    return import_refs


def functions_created_by(app) -> dict:
    """The functions a run of `app` creates: what modal.runner._create_all_objects loads, `app._local_state.functions`
    (private; its public twin `registered_functions` is deprecated in 1.6)."""
    return dict(app._local_state.functions)


def test_modal_run_of_the_file_creates_only_the_training_function(modal_cli_import):
    ref = modal_cli_import.parse_import_ref(str(REPO / "modal_app.py"), command="modal run")
    runnable, _, _ = modal_cli_import.import_and_filter(
        ref, base_cmd="modal run", accept_local_entrypoint=True, accept_webhook=False
    )
    module = sys.modules["modal_app"]
    ephemeral = modal_cli_import._get_runnable_app(runnable)

    assert runnable is module.main and ephemeral is module.training_app
    created = functions_created_by(ephemeral)
    assert set(created) == {"train_spec"}  # no api (no warm container), no drain (no schedule), no service train
    info = module.train_spec.info()
    assert info.schedule is None and info.web_info is None
    assert info.secrets == []  # none of the service's credentials
    assert {path: mount.name for path, mount in info.volumes.items()} == {"/runs": "robotrain-runs"}
    assert info.gpus == [("A10G", 1)]


def test_modal_deploy_of_the_file_deploys_the_service_and_nothing_else(modal_cli_import):
    ref = modal_cli_import.parse_import_ref(str(REPO / "modal_app.py"), command="modal deploy")
    deployed = modal_cli_import.import_app_from_ref(ref, base_cmd="modal deploy")
    module = sys.modules["modal_app"]

    assert deployed is module.app
    assert set(functions_created_by(deployed)) == {"api", "drain", "train"}
    assert deployed._local_state.local_entrypoints == {}


def test_limits_set_where_modal_deploy_runs_are_baked_into_the_service(monkeypatch):
    monkeypatch.setenv("ROBOTRAIN_MAX_CONCURRENT_JOBS", "4")
    monkeypatch.setenv("ROBOTRAIN_DATA_DIR", "/somewhere/local")  # a path of the deploying machine: never baked
    sys.modules.pop("modal_app", None)
    try:
        reloaded = importlib.import_module("modal_app")
        assert reloaded.tuning == {"ROBOTRAIN_MAX_CONCURRENT_JOBS": "4"}
    finally:
        sys.modules.pop("modal_app", None)


def test_the_api_refuses_to_start_on_modal_without_clerk(local_env):
    from robotrain.entrypoints import modal as entry

    settings = local_env.model_copy(update={"launcher": "modal"})  # in the service image, no CLERK_* variable
    with pytest.raises(RuntimeError, match="CLERK_PUBLISHABLE_KEY"):
        entry.api_app(settings, train=FakeFunction(), drain=FakeFunction(), volume=FakeVolume())


# --- bodies, run locally -----------------------------------------------------------------------------------------


def submit_through_the_api(settings: Settings, fakes: dict[str, Any]) -> str:
    token = LocalKeys(settings.data_dir).mint("alice")
    with TestClient(fakes["real"]["api"].local()) as client:
        response = client.post("/jobs", json=TINY_SPEC, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def test_a_submit_through_the_api_kicks_the_drain_function(local_env, fakes):
    app = fakes["real"]["api"].local()
    token = LocalKeys(local_env.data_dir).mint("alice")

    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        response = client.post("/jobs", json=TINY_SPEC, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    assert fakes["drain"].spawned == [(response.json()["id"],)]  # kicked for that job


def test_drain_spawns_train_with_the_jobs_gpu_then_train_runs_the_attempt_for_real(local_env, fakes):
    components = build_components(local_env)
    job_id = submit_through_the_api(local_env, fakes)

    fakes["real"]["drain"].local()

    assert fakes["train"].spawned == [(job_id, 1)]
    assert fakes["train"].options[0]["gpu"] == "H100"
    assert fakes["train"].options[0]["timeout"] >= 7 * 60
    starting = components.store.get(job_id)
    assert starting.status is JobStatus.STARTING and starting.launch_handle == "fc-1"

    fakes["drain"].spawned.clear()
    fakes["real"]["train"].local(job_id, 1)

    done = components.store.get(job_id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert "pc_success" in done.result["eval"]
    checkpoint = local_env.resolved_artifacts_dir / job_id / done.result["checkpoint"]
    assert (checkpoint / "pretrained_model" / "model.safetensors").is_file()
    assert fakes["volume"].commits >= 2  # after each checkpoint and at the end
    assert fakes["drain"].spawned == [()]  # the freed slot is offered to the next job at once


def test_a_restarted_input_takes_over_its_running_attempt(local_env, fakes):
    """Modal re-runs the same input after a preemption: the job is still `running` at that attempt."""
    components = build_components(local_env)
    job_id = submit_through_the_api(local_env, fakes)
    fakes["real"]["drain"].local()
    from robotrain.jobs.lifecycle import apply_transition

    apply_transition(components.store, components.store.get(job_id), JobStatus.RUNNING)  # the preempted run

    fakes["real"]["train"].local(job_id, 1)

    done = components.store.get(job_id)
    assert done.status is JobStatus.SUCCEEDED and done.attempt == 1
    messages = [event.message for event in components.store.list_events(job_id)]
    assert any("restarted by the platform" in message for message in messages)


def test_api_reads_artifacts_from_the_reloaded_volume(local_env, fakes):
    app = fakes["real"]["api"].local()
    token = LocalKeys(local_env.data_dir).mint("alice")
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        job_id = client.post("/jobs", json=TINY_SPEC, headers=headers).json()["id"]
        job_dir = local_env.resolved_artifacts_dir / job_id
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / "result.json").write_text("{}")
        listing = client.get(f"/jobs/{job_id}/artifacts", headers=headers)
        escape = client.get(f"/jobs/{job_id}/artifacts/..%2F..%2Fdata%2Frobotrain.sqlite3", headers=headers)

    assert listing.status_code == 200
    assert {"path": "result.json", "size": 2} in listing.json()["data"]
    assert escape.status_code == 404
    assert fakes["volume"].reloads >= 1


def test_submits_kick_the_drain_off_the_request_path_and_a_burst_makes_one_more_spawn():
    from robotrain.entrypoints.modal import DrainKick

    release = threading.Event()
    spawns: list[str] = []

    def spawn(job_id: str) -> None:  # a spawn that takes as long as the test wants (a slow call to Modal)
        spawns.append(job_id)
        release.wait(30)

    kicker = DrainKick(spawn)
    kicker.start()
    kicker.kick("job_first")  # returns while the spawn it caused is still blocked: the request never waits for Modal
    deadline = time.monotonic() + 30
    while not spawns and time.monotonic() < deadline:
        time.sleep(0.01)
    for index in range(5):  # more submits while that spawn is in flight
        kicker.kick(f"job_{index}")
    release.set()
    kicker.stop()
    assert spawns == ["job_first", "job_4"]  # the burst's drain waits for its latest job, sent last
