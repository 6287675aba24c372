"""The `robotrain` CLI against a real server (uvicorn on 127.0.0.1 in a thread, embedded components, no dispatch)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from robotrain import cli
from robotrain.auth.local_keys import LocalKeys
from robotrain.cli import jobs as cli_jobs
from robotrain.jobs.models import JobStatus, Progress
from robotrain.jobs.schemas import StatusUpdate
from robotrain.jobs.service import JobService
from robotrain.ports import Components
from robotrain.settings import Settings
from robotrain.wiring import build_components, build_verifier
from tests.robotrain.api.conftest import VALID_SPEC
from tests.support.app import api_app


@dataclass
class Server:
    url: str
    settings: Settings
    components: Components
    token: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    settings = Settings(data_dir=tmp_path / "data")
    components = build_components(settings)
    app = api_app(components)
    config = uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield Server(
            f"http://127.0.0.1:{config.port}", settings, components, LocalKeys(settings.data_dir).mint("alice")
        )
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


def run(server: Server, *args: str) -> int:
    return cli.main(["--url", server.url, "--token", server.token, *args])


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    import json

    path = tmp_path / "spec.json"
    path.write_text(json.dumps(VALID_SPEC))
    return path


def submitted_id(out: str) -> str:
    return out.split()[1]


def test_token_prints_a_token_the_server_accepts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["token", "--user", "alice", "--data-dir", str(tmp_path), "--ttl", "120"]) == 0
    token = capsys.readouterr().out.strip()
    assert build_verifier(Settings(data_dir=tmp_path)).verify(token) == "alice"


def test_submit_list_show_cancel_retry_logs(
    server: Server, spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(server, "submit", str(spec_file)) == 0
    job_id = submitted_id(capsys.readouterr().out)
    assert job_id.startswith("job_")

    assert run(server, "list", "--status", "queued") == 0
    assert job_id in capsys.readouterr().out
    assert run(server, "show", job_id) == 0
    assert '"status": "queued"' in capsys.readouterr().out

    assert run(server, "cancel", job_id) == 0
    assert capsys.readouterr().out.strip() == f"{job_id} cancelled"
    assert run(server, "retry", job_id) == 0
    assert f"retry of {job_id}" in capsys.readouterr().out

    assert run(server, "logs", job_id) == 0
    logs = capsys.readouterr().out
    assert "[status] queued" in logs and "[status] cancelled" in logs


def test_server_errors_are_one_line(server: Server, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run(server, "show", "job_missing") == 1
    assert capsys.readouterr().err == "error job_not_found: no job 'job_missing'\n"

    assert cli.main(["--url", server.url, "--token", "garbage", "list"]) == 1
    assert capsys.readouterr().err.startswith("error unauthorized: ")

    bad = tmp_path / "bad.json"
    bad.write_text('{"policy": {"type": "mlp"}}')
    assert run(server, "submit", str(bad)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error validation_error: ") and "dataset" in err and err.count("\n") == 1


def test_unreachable_server_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--url", f"http://127.0.0.1:{_free_port()}", "--token", "t", "list"]) == 1
    assert capsys.readouterr().err.startswith("error connection_failed: cannot reach")


def test_url_and_token_come_from_the_environment(
    server: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ROBOTRAIN_URL", server.url)
    monkeypatch.setenv("ROBOTRAIN_TOKEN", server.token)
    assert cli.main(["list"]) == 0


def test_download_all_or_one(
    server: Server, spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(server, "submit", str(spec_file))
    job_id = submitted_id(capsys.readouterr().out)
    job_dir = server.components.artifacts.job_dir(job_id)
    (job_dir / "checkpoints" / "000050").mkdir(parents=True)
    (job_dir / "checkpoints" / "000050" / "model.safetensors").write_bytes(b"weights")
    (job_dir / "result.json").write_text("{}")

    out_all = tmp_path / "all"
    assert run(server, "download", job_id, "--out", str(out_all)) == 0
    assert (out_all / "checkpoints" / "000050" / "model.safetensors").read_bytes() == b"weights"
    assert (out_all / "result.json").read_text() == "{}"

    out_one = tmp_path / "one"
    assert run(server, "download", job_id, "--path", "result.json", "--out", str(out_one)) == 0
    assert [p.name for p in out_one.iterdir()] == ["result.json"]

    assert run(server, "download", job_id, "--path", "nope.bin", "--out", str(out_one)) == 1
    assert capsys.readouterr().err.startswith("error artifact_not_found")


def test_download_refuses_paths_that_leave_the_output_dir(tmp_path: Path) -> None:
    with pytest.raises(cli.CliError):
        cli._safe_target(tmp_path, "../escape")
    with pytest.raises(cli.CliError):
        cli._safe_target(tmp_path, "/etc/passwd")


def test_submit_follow_shows_progress_then_the_result(
    server: Server, spec_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli_jobs, "POLL_INTERVAL_S", 0.05)
    service = JobService(server.components)
    store = server.components.store

    def worker_elsewhere() -> None:
        # Plays the worker through the internal status API of the service: starting, running with progress, done.
        deadline = time.monotonic() + 10
        while not (jobs := store.find(statuses=[JobStatus.QUEUED])):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        job_id = jobs[0].id
        service.set_status(job_id, StatusUpdate(status=JobStatus.STARTING))
        time.sleep(0.2)
        progress = Progress(step=25, total_steps=50, metrics={"train/loss": 0.125})
        service.set_status(job_id, StatusUpdate(status=JobStatus.RUNNING, progress=progress))
        time.sleep(0.3)
        result = {"eval": {"pc_success": 85.0}, "final_metrics": {}, "checkpoint": "checkpoints/000050"}
        service.set_status(job_id, StatusUpdate(status=JobStatus.SUCCEEDED, result=result))

    thread = threading.Thread(target=worker_elsewhere)
    thread.start()
    code = run(server, "submit", str(spec_file), "--follow")
    thread.join()
    out = capsys.readouterr().out
    assert code == 0, out
    for expected in (
        "[status] queued",
        "[status] starting",
        "[status] running",
        "step 25/50 loss 0.125",
        "eval success rate: 85.0%",
        "checkpoint: checkpoints/000050",
    ):
        assert expected in out, out
    assert out.index("starting") < out.index("step 25/50") < out.index("eval success rate")


def test_follow_exits_non_zero_when_the_job_is_cancelled(
    server: Server, spec_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli_jobs, "POLL_INTERVAL_S", 0.05)
    run(server, "submit", str(spec_file))
    job_id = submitted_id(capsys.readouterr().out)
    run(server, "cancel", job_id)
    assert run(server, "logs", job_id, "--follow") == 1


def test_datasets_upload_list_rm_and_submit_from_a_local_directory(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import re

    from training.data.sources import write_builtin_dataset

    directory = write_builtin_dataset("push2d", tmp_path / "my push2d", episodes=2, seed=0)
    assert run(server, "datasets", "upload", str(directory), "--name", "mine") == 0
    [uri] = re.findall(r"dataset://ds_[0-9a-z]{26}", capsys.readouterr().out)
    spec = tmp_path / "local.json"
    spec.write_text(json.dumps({**VALID_SPEC, "dataset": {"uri": str(directory)}}))
    assert run(server, "submit", str(spec)) == 0
    out = capsys.readouterr().out
    [second] = re.findall(r"dataset://ds_[0-9a-z]{26}", out)
    assert out.startswith(f"uploaded {directory} as {second}") and second != uri
    job_id = out.splitlines()[1].split()[1]
    assert server.components.store.get(job_id).spec["dataset"]["uri"] == second
    assert run(server, "datasets", "list") == 0
    listed = capsys.readouterr().out
    assert listed.count("ds_") == 2 and "mine" in listed and "my push2d" in listed
    assert run(server, "datasets", "rm", second.removeprefix("dataset://")) == 1  # its job is queued
    assert capsys.readouterr().err.startswith("error dataset_in_use: ")
    assert run(server, "datasets", "rm", uri.removeprefix("dataset://")) == 0
    (directory / "meta" / "link.json").symlink_to(tmp_path / "spec.json")
    assert run(server, "datasets", "upload", str(directory)) == 1
    assert capsys.readouterr().err.startswith("error unsafe_dataset: meta/link.json in ")
