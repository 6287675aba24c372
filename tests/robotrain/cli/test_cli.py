"""The `robotrain` CLI against a real server (uvicorn on 127.0.0.1 in a thread, embedded components, no dispatch)."""

from __future__ import annotations

import contextlib
import json
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
from robotrain.jobs.models import ErrorCode, JobError, JobStatus, MetricPoint, Progress
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
    settings = Settings(data_dir=tmp_path / "data", stream_poll_interval_s=0.05, stream_max_s=0.3)
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


def test_list_pages_on_with_the_cursor_it_prints(
    server: Server, spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):
        assert run(server, "submit", str(spec_file)) == 0
    submitted = [submitted_id(line) for line in capsys.readouterr().out.splitlines() if line.startswith("submitted")]
    assert run(server, "list", "--limit", "2") == 0
    first, more = capsys.readouterr().out.strip().rsplit("\n", 1)
    cursor = more.removeprefix("(more: --cursor ").removesuffix(")")
    assert run(server, "list", "--limit", "2", "--cursor", cursor) == 0
    rest = capsys.readouterr().out
    assert [job_id in first for job_id in submitted] == [False, True, True] and submitted[0] in rest
    assert "(more:" not in rest


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


def play_the_worker(server: Server, *, fail: bool = False) -> str:
    """What a worker elsewhere writes for the queued job: starting, running, metric points, then the end. Runs in the
    test's thread (an assert here fails the test)."""
    store = server.components.store
    deadline = time.monotonic() + 20
    while not (jobs := store.find(statuses=[JobStatus.QUEUED])):
        assert time.monotonic() < deadline, "the CLI did not submit"
        time.sleep(0.02)
    job_id = jobs[0].id
    service = JobService(server.components)
    service.set_status(job_id, StatusUpdate(status=JobStatus.STARTING))
    service.set_status(job_id, StatusUpdate(status=JobStatus.RUNNING, progress=Progress(step=0, total_steps=50)))
    for step in (25, 50):
        points = [MetricPoint(step=step, name="train/loss", value=0.25 / (step // 25))]
        store.append_metrics(job_id, [*points, MetricPoint(step=step, name="train/samples_per_s", value=1000.0)])
        time.sleep(0.15)
    if fail:
        error = JobError(code=ErrorCode.TRAINING_ERROR, message="the loss diverged")
        service.set_status(job_id, StatusUpdate(status=JobStatus.FAILED, error=error))
    else:
        result = {"eval": {"pc_success": 85.0}, "final_metrics": {}, "checkpoint": "checkpoints/000050"}
        service.set_status(job_id, StatusUpdate(status=JobStatus.SUCCEEDED, result=result))
    return job_id


def run_in_thread(server: Server, *args: str) -> tuple[threading.Thread, list[int]]:
    code: list[int] = []
    thread = threading.Thread(target=lambda: code.append(run(server, *args)))
    thread.start()
    return thread, code


def test_submit_follow_streams_status_and_progress_then_the_result(
    server: Server, spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    thread, code = run_in_thread(server, "submit", str(spec_file), "--follow")
    play_the_worker(server)
    thread.join(timeout=30)
    out = capsys.readouterr().out
    assert code == [0], out
    for expected in (
        "[status] queued",
        "[status] starting",
        "[status] running",
        "step 25/50  loss 0.25  samples/s 1000",
        "step 50/50  loss 0.125",
        "eval success rate: 85.0%",
        "checkpoint: checkpoints/000050",
    ):
        assert expected in out, out
    assert out.index("starting") < out.index("step 25/50") < out.index("step 50/50") < out.index("eval success rate")


def test_follow_survives_the_stream_ending_midway_without_losing_or_repeating_events(
    server: Server, spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the server ends every stream after 0.3 s (stream_max_s), so the CLI resumes with Last-Event-ID several times
    thread, code = run_in_thread(server, "submit", str(spec_file), "--follow", "--json")
    play_the_worker(server, fail=True)
    thread.join(timeout=30)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == [1]
    streamed = [line for line in lines if "event" in line]
    statuses = [line["data"]["message"].split(":")[0] for line in streamed if line["event"] == "status"]
    assert statuses == ["queued", "starting", "running", "failed"]
    steps = [
        point[0] for line in streamed if line["event"] == "metrics" for point in line["data"]["series"]["train/loss"]
    ]
    assert steps == [25, 50]
    assert lines[-1]["status"] == "failed" and lines[-1]["error"]["code"] == "training_error"


def test_logs_follow_exits_3_when_the_job_is_cancelled(server: Server, spec_file: Path, capsys) -> None:
    run(server, "submit", str(spec_file))
    job_id = submitted_id(capsys.readouterr().out)
    run(server, "cancel", job_id)
    assert run(server, "logs", job_id, "--follow") == 3
    assert "[status] cancelled: cancelled by the user" in capsys.readouterr().out


def test_every_client_command_speaks_json(server: Server, spec_file: Path, capsys, tmp_path: Path) -> None:
    assert run(server, "submit", str(spec_file), "--json") == 0
    job = json.loads(capsys.readouterr().out)
    assert job["status"] == "queued"
    for args in (("list", "--json"), ("show", job["id"], "--json"), ("cancel", job["id"], "--json")):
        assert run(server, *args) == 0
        parsed = json.loads(capsys.readouterr().out)
        assert parsed["data"][0]["id"] == job["id"] if args[0] == "list" else parsed["id"] == job["id"]
    assert run(server, "logs", job["id"], "--json") == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [event["kind"] for event in events] == ["status", "status"]
    assert run(server, "retry", job["id"], "--json") == 0
    assert json.loads(capsys.readouterr().out)["retry_of"] == job["id"]
    assert run(server, "download", job["id"], "--json", "--out", str(tmp_path / "dl")) == 0
    assert json.loads(capsys.readouterr().out) == {"files": []}
    assert run(server, "open", job["id"], "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"url": f"{server.url}/#/jobs/{job['id']}"}
    assert cli.main(["token", "--user", "carol", "--data-dir", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["user"] == "carol"


def test_open_prints_the_dashboard_url_of_the_job(server: Server, capsys) -> None:
    assert run(server, "open", "job_123") == 0
    assert capsys.readouterr().out.strip() == f"{server.url}/#/jobs/job_123"


class DroppingProxy:
    """A TCP proxy on 127.0.0.1 in front of the server that cuts the first `drops` event-stream answers after
    `after_bytes` bytes, mid-stream, as a flaky network would (the client's keep-alive connection goes with it)."""

    def __init__(self, target_port: int, *, drops: int, after_bytes: int) -> None:
        self.drops = drops
        self.after_bytes = after_bytes
        self.cut = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.target_port = target_port
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        streaming = threading.Event()  # a request on this connection asked for an event stream

        def requests() -> None:
            try:
                while chunk := client.recv(65536):
                    if b"text/event-stream" in chunk and self.cut < self.drops:
                        self.cut += 1
                        streaming.set()
                    upstream.sendall(chunk)
            except OSError:
                pass

        threading.Thread(target=requests, daemon=True).start()
        sent = 0
        try:
            while chunk := upstream.recv(65536):
                if streaming.is_set():
                    if sent + len(chunk) > self.after_bytes:
                        client.sendall(chunk[: self.after_bytes - sent])
                        break  # drop the connection mid-answer
                    sent += len(chunk)
                client.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (client, upstream):  # shutdown first: it wakes the thread blocked reading the other side
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()

    def close(self) -> None:
        self.listener.close()


def test_follow_reconnects_after_dropped_connections_without_losing_or_repeating_events(
    server: Server, spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proxy = DroppingProxy(int(server.url.rsplit(":", 1)[1]), drops=4, after_bytes=900)
    try:
        code: list[int] = []
        args = ["--url", proxy.url, "--token", server.token, "submit", str(spec_file), "--follow", "--json"]
        thread = threading.Thread(target=lambda: code.append(cli.main(args)))
        thread.start()
        play_the_worker(server)
        thread.join(timeout=60)
    finally:
        proxy.close()
    captured = capsys.readouterr()
    assert proxy.cut >= 2 and code == [0], captured.err
    lines = [json.loads(line) for line in captured.out.splitlines()]
    streamed = [line for line in lines if "event" in line]
    statuses = [line["data"]["message"].split(":")[0] for line in streamed if line["event"] == "status"]
    assert statuses == ["queued", "starting", "running", "succeeded"]
    steps = [p[0] for line in streamed if line["event"] == "metrics" for p in line["data"]["series"]["train/loss"]]
    assert steps == [25, 50]


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


def test_the_datasets_commands_speak_json(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.data.sources import write_builtin_dataset

    directory = write_builtin_dataset("push2d", tmp_path / "tiny", episodes=2, seed=0)
    assert run(server, "datasets", "upload", str(directory), "--json") == 0
    uploaded = json.loads(capsys.readouterr().out)
    assert uploaded["uri"] == f"dataset://{uploaded['id']}" and uploaded["episodes"] == 2
    assert run(server, "datasets", "list", "--json") == 0
    assert [dataset["id"] for dataset in json.loads(capsys.readouterr().out)["data"]] == [uploaded["id"]]
    assert run(server, "datasets", "rm", uploaded["id"], "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"deleted": uploaded["id"]}
