"""A Launcher that runs each attempt's `run_worker` on a thread pool inside this process.

For the soak bench (bench/soak.py) and tests that need thousands of real training runs: a subprocess per job would
spend most of its time importing torch, while threads share one import. Everything else is the production path: the
same drain claims and launches, the same `run_worker` fences on (job, attempt), trains for real and writes through
the store. It is not selected by Settings; a caller builds it and binds it to its Components.

Stopping is cooperative: a queued (not yet started) attempt is dropped from the pool; a running one stops at its
next step, because its JobReporter sees within a second that the job is cancelled or no longer its attempt.
The handle is "thread:<pid>:<n>"; a handle of another process (e.g. from before a restart) is answered from /proc:
ended when that process is gone, "cannot tell" while some process with that pid runs.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from robotrain.jobs.models import Job

log = logging.getLogger(__name__)

# What a thread runs for one attempt: the worker's run, given (job_id, attempt).
AttemptRunner = Callable[[str, int], None]


class ThreadLauncher:
    def __init__(self, max_workers: int, *, on_exit: Callable[[], None] | None = None):
        """`on_exit` is called after each attempt ends (e.g. DispatchLoop.kick: a slot is free, drain now)."""
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="worker")
        self._run_attempt: AttemptRunner | None = None
        self._futures: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._on_exit = on_exit

    def bind(self, run_attempt: AttemptRunner) -> None:
        """The function each attempt runs (the worker's `run_worker` over components that include this launcher,
        which is why it is given after construction)."""
        self._run_attempt = run_attempt

    def launch(self, job: Job) -> str:
        if self._run_attempt is None:
            raise RuntimeError("ThreadLauncher.bind(run_attempt) must be called before launching")
        handle = f"thread:{os.getpid()}:{next(self._numbers)}"
        future = self._pool.submit(self._run, self._run_attempt, job.id, job.attempt)
        with self._lock:
            self._futures[handle] = future
        return handle

    def is_alive(self, handle: str) -> bool | None:
        with self._lock:
            future = self._futures.get(handle)
        if future is not None:
            return not future.done()
        kind, _, rest = handle.partition(":")
        pid_text = rest.partition(":")[0]
        if kind != "thread" or not pid_text.isdigit():
            return None
        if int(pid_text) == os.getpid():
            return False  # ours, and no longer tracked: it ended
        return None if Path(f"/proc/{pid_text}").exists() else False

    def cancel(self, handle: str) -> None:
        with self._lock:
            future = self._futures.get(handle)
        if future is not None:
            future.cancel()  # only drops an attempt that has not started; a running one stops itself (module doc)

    def shutdown(self, *, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def _run(self, run_attempt: AttemptRunner, job_id: str, attempt: int) -> None:
        try:
            run_attempt(job_id, attempt)
        except Exception:  # noqa: BLE001 - a worker's top level: log it; the sweep ends the job (worker_lost)
            log.exception("worker thread for %s attempt %d crashed", job_id, attempt)
        finally:
            if self._on_exit is not None:
                self._on_exit()
