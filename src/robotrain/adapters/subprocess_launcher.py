"""The Launcher port on one machine: each attempt of a job is a `python -m robotrain.entrypoints.worker JOB_ID ATTEMPT`
child in its own process group (so a server killed with -9 leaves it running, and a cancel stops all of it).

The handle is "pid:<pid>:<start>" where <start> is the process's start time in clock ticks since boot (field 22 of
/proc/<pid>/stat). It outlives the server, and it cannot be fooled by PID reuse: a new process with the same pid has
another start time. Linux only (/proc); elsewhere is_alive answers None ("cannot tell").

A worker gets the environment Settings.child_environ builds from allow-lists (no API secret), and writes its output
(tracebacks included) to <data dir>/logs/<job id>/worker-<attempt>.log: the server's log, not the job's artifacts,
which its user can download.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from robotrain.errors import LaunchError
from robotrain.jobs.models import Job
from robotrain.settings import Settings
from training.paths import inside

log = logging.getLogger(__name__)

_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from the state on (the command name may contain spaces and parentheses)."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()


def process_start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return None if fields is None else fields[19]  # field 22 overall; the list starts at field 3 (state)


def parse_handle(handle: str) -> tuple[int, str]:
    kind, _, rest = handle.partition(":")
    pid_text, _, start = rest.partition(":")
    if kind != "pid" or not pid_text.isdigit() or not start.isdigit():
        raise ValueError(f"not a subprocess launcher handle: {handle!r}")
    return int(pid_text), start


def worker_log_dir(settings: Settings, job_id: str) -> Path:
    return inside(settings.data_dir, "logs", job_id, what="job id")


class SubprocessLauncher:
    def __init__(self, settings: Settings, *, kill_grace_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self._settings = settings
        self._kill_grace_s = kill_grace_s
        self._clock = clock  # measures the kill grace; tests move it instead of waiting

    def launch(self, job: Job) -> str:
        log_dir = worker_log_dir(self._settings, job.id)
        command = [sys.executable, "-m", "robotrain.entrypoints.worker", job.id, str(job.attempt)]
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            with open(log_dir / f"worker-{job.attempt}.log", "ab") as output:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env=self._settings.child_environ(),
                    start_new_session=True,  # its own process group, detached from the server's terminal and signals
                    close_fds=True,
                )
        except OSError as exc:
            raise LaunchError(f"could not start the worker process: {exc}") from exc
        # Reap it when it exits, so no zombie is left while the server lives.
        threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()
        start = process_start_time(process.pid)
        if start is None:  # exited and already reaped in the instant since Popen: it ran, and is gone
            start = "0"
        return f"pid:{process.pid}:{start}"

    def is_alive(self, handle: str) -> bool | None:
        try:
            pid, start = parse_handle(handle)
        except ValueError:
            log.warning("cannot tell whether %r runs: not a handle of this launcher", handle)
            return None
        if not _PROC.is_dir():
            return None
        fields = _stat_fields(pid)
        if fields is None or fields[19] != start:
            return False
        return fields[0] not in ("Z", "X")  # a zombie has ended; only its exit status is left

    def cancel(self, handle: str) -> None:
        """SIGTERM to the worker's process group now (training checkpoints and returns), SIGKILL after the grace
        period if it is still there. Returns at once; the wait happens on a daemon thread."""
        if not self.is_alive(handle):
            return
        pid, _ = parse_handle(handle)
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        except OSError as exc:  # e.g. EPERM: the sweep asks again later
            raise LaunchError(f"could not signal worker {handle}: {exc}") from exc
        threading.Thread(target=self._kill_after_grace, args=(handle,), name=f"kill-{pid}", daemon=True).start()

    def _kill_after_grace(self, handle: str) -> None:
        pid, _ = parse_handle(handle)
        deadline = self._clock() + self._kill_grace_s
        while self._clock() < deadline:
            if not self.is_alive(handle):
                return
            time.sleep(0.1)
        if self.is_alive(handle):  # checked again: the pid must still be our worker, not a reused one
            log.warning("worker %s ignored SIGTERM for %.0f s; killing it", handle, self._kill_grace_s)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
