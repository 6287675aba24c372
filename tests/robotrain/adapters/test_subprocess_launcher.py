from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from robotrain.adapters.subprocess_launcher import SubprocessLauncher, parse_handle, process_start_time
from robotrain.jobs.models import Job, JobStatus, new_job_id, utcnow
from robotrain.settings import Settings
from tests.support.clocks import ManualClock

# SIGTERM blocked, not ignored: a SIGTERM sent to it stays pending, where /proc shows it (pending_signals)
BLOCKS_SIGTERM = (
    "import signal, time; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}); print('ready', flush=True);"
    "time.sleep(60)"
)


@pytest.fixture
def launcher(tmp_path: Path) -> SubprocessLauncher:
    return SubprocessLauncher(Settings(data_dir=tmp_path / "data"), kill_grace_s=0.5)


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait(5)


def spawn(children: list[subprocess.Popen], code: str) -> tuple[subprocess.Popen, str]:
    child = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE, text=True)
    children.append(child)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child, f"pid:{child.pid}:{process_start_time(child.pid)}"


def pending_signals(pid: int) -> set[int]:
    """Signals sent to the process and not yet delivered (blocked ones stay here), from /proc/<pid>/status."""
    mask = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")):
            mask |= int(line.split()[1], 16)
    return {number for number in range(1, 65) if mask >> (number - 1) & 1}


def wait_until(predicate, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_a_running_child_is_alive_and_an_ended_one_is_not(launcher, children) -> None:
    child, handle = spawn(children, "import time; print('ready', flush=True); time.sleep(60)")
    assert launcher.is_alive(handle) is True
    child.kill()
    assert wait_until(lambda: launcher.is_alive(handle) is False)  # a zombie counts as ended, reaped or not
    child.wait(5)
    assert launcher.is_alive(handle) is False


def test_a_reused_pid_with_another_start_time_is_not_our_worker(launcher, children) -> None:
    child, handle = spawn(children, "import time; print('ready', flush=True); time.sleep(60)")
    pid, start = parse_handle(handle)
    assert launcher.is_alive(f"pid:{pid}:{int(start) + 1}") is False


def test_a_foreign_handle_cannot_be_judged(launcher) -> None:
    assert launcher.is_alive("fc-01abc") is None


def test_cancel_stops_the_whole_process_group(launcher, children) -> None:
    code = (
        "import subprocess, sys, time;"
        "grandchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "print('ready', flush=True); print(grandchild.pid, flush=True); time.sleep(60)"
    )
    child, handle = spawn(children, code)
    assert child.stdout is not None
    grandchild = int(child.stdout.readline())
    grandchild_handle = f"pid:{grandchild}:{process_start_time(grandchild)}"
    launcher.cancel(handle)
    assert wait_until(lambda: child.poll() is not None)
    assert wait_until(lambda: launcher.is_alive(grandchild_handle) is False)


def test_cancel_sends_sigterm_and_returns_without_waiting_for_the_worker_to_go(tmp_path: Path, children) -> None:
    launcher = SubprocessLauncher(Settings(data_dir=tmp_path / "data"), kill_grace_s=10, clock=ManualClock())
    child, handle = spawn(children, BLOCKS_SIGTERM)
    launcher.cancel(handle)  # returns while the worker still runs: it cannot go before its grace ends
    assert signal.SIGTERM in pending_signals(child.pid)
    assert child.poll() is None


def test_cancel_kills_a_worker_that_ignores_sigterm_once_the_grace_period_is_over(tmp_path: Path, children) -> None:
    clock = ManualClock()
    launcher = SubprocessLauncher(Settings(data_dir=tmp_path / "data"), kill_grace_s=10, clock=clock)
    child, handle = spawn(children, BLOCKS_SIGTERM)
    launcher.cancel(handle)
    assert wait_until(lambda: clock.reads >= 3)  # the grace watcher has looked at the time, twice since it began
    assert child.poll() is None  # still in its grace period
    clock.advance(10)
    assert wait_until(lambda: child.poll() is not None)
    assert child.returncode == -signal.SIGKILL


def test_cancel_never_signals_a_process_that_reuses_the_workers_pid(launcher, children) -> None:
    # the worker ended long ago and its pid now belongs to another process: same pid, another start time
    other, _ = spawn(children, BLOCKS_SIGTERM)
    reused = f"pid:{other.pid}:{int(process_start_time(other.pid)) - 1}"
    launcher.cancel(reused)
    assert pending_signals(other.pid) == set()
    assert other.poll() is None
    assert not [thread for thread in threading.enumerate() if thread.name == f"kill-{other.pid}"]


def test_cancel_of_an_ended_worker_signals_nothing(launcher, children) -> None:
    child, handle = spawn(children, "print('ready', flush=True)")
    child.wait(5)
    launcher.cancel(handle)
    assert launcher.is_alive(handle) is False
    assert not [thread for thread in threading.enumerate() if thread.name == f"kill-{child.pid}"]


def test_launch_runs_the_worker_module_in_its_own_group_with_a_log(tmp_path: Path, launcher) -> None:
    now = utcnow()
    job = Job(
        id=new_job_id(),
        user_id="u",
        name="n",
        status=JobStatus.STARTING,
        spec={},
        attempt=1,
        created_at=now,
        updated_at=now,
    )
    handle = launcher.launch(job)
    pid, _ = parse_handle(handle)
    # The job is not in the store, so the worker says so and exits 0 without training.
    assert wait_until(lambda: launcher.is_alive(handle) is False, timeout_s=30)
    log_text = (tmp_path / "data" / "logs" / job.id / "worker-1.log").read_text()  # the server's log, not an artifact
    assert f"no job {job.id}" in log_text
    assert pid != 0
