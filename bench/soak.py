"""Soak: submit many jobs with a fast training spec to the embedded stack and check that none is lost or run twice.

    .venv/bin/python bench/soak.py [--jobs 5000] [--concurrency 2] [--users 50] [--duplicate-fraction 0.1]
                                   [--baseline-jobs 40] [--deadline-s 1800]

The stack is the one `robotrain serve` runs, minus HTTP: the SQLite store and queue from `build_components`, the
JobService, and the DispatchLoop (drain + sweep) on its background thread. Only the launcher differs: the
ThreadLauncher runs the real `run_worker` on `--concurrency` threads in this process, because a subprocess per job
would spend hours importing torch. Every job really trains (a tiny MLP on builtin push2d) and writes its checkpoint.

Client threads submit the jobs while the drain runs; `--duplicate-fraction` of them get a second copy of their queue
message (an at-least-once delivery). The bench counts each call of `training.trainer.run` per (job, attempt) by
wrapping it, independently of the service's own bookkeeping, then prints:
- lost: accepted jobs missing from the store or not terminal by the deadline;
- duplicated: jobs whose training ran more than once for one attempt, or more than once in all;
- terminal counts by status, and throughput in jobs/s;
- the same spec trained directly (no service) on the same number of threads, as the baseline, and the ratio.
It stops by itself at `--deadline-s` and prints what it has.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import training.trainer
from robotrain.adapters.thread_launcher import ThreadLauncher
from robotrain.control import Dispatcher, DispatchLoop
from robotrain.jobs.lifecycle import job_message
from robotrain.jobs.models import JobStatus
from robotrain.jobs.service import JobService
from robotrain.settings import Settings
from robotrain.wiring import build_components
from robotrain.worker.runner import run_worker
from training.spec import TrainSpec

FAST_SPEC = {
    "name": "soak",
    "policy": {"type": "mlp", "hidden_dims": [16, 16]},
    "dataset": {"uri": "builtin://push2d?episodes=5&seed=1"},
    "training": {"steps": 10, "batch_size": 16, "checkpoint_every": 10, "log_every": 10, "device": "cpu"},
    "eval": {"env": None},
}


class CountingTrainer:
    """Wraps training.trainer.run and counts its calls per (job id, attempt); the job id is the out_dir's name and
    the attempt is read from the reporter (a JobReporter). The worker imports `run` at call time, so it gets this."""

    def __init__(self, real):
        self._real = real
        self._lock = threading.Lock()
        self.calls: collections.Counter[tuple[str, int]] = collections.Counter()

    def __call__(self, spec, out_dir, reporter=None, **kwargs):
        key = (Path(out_dir).name, getattr(reporter, "attempt", -1))
        with self._lock:
            self.calls[key] += 1
        return self._real(spec, out_dir, reporter, **kwargs)


def baseline_jobs_per_s(spec: TrainSpec, jobs: int, concurrency: int, root: Path) -> float:
    """The same training, called directly on `concurrency` threads: what the machine can do without the service."""
    real = training.trainer.run if not isinstance(training.trainer.run, CountingTrainer) else training.trainer.run._real
    real(spec, root / "warm-up", None)  # one untimed run: torch's first-call costs and the dataset cache
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda i: real(spec, root / f"baseline-{i}", None), range(jobs)))
    return jobs / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=2, help="worker threads = max concurrent jobs")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--clients", type=int, default=4, help="threads submitting jobs")
    parser.add_argument("--duplicate-fraction", type=float, default=0.1)
    parser.add_argument("--baseline-jobs", type=int, default=40)
    parser.add_argument("--deadline-s", type=float, default=1800.0)
    parser.add_argument("--keep", action="store_true", help="keep the data directory (printed) for inspection")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="robotrain-soak-"))
    spec = TrainSpec.model_validate(FAST_SPEC)
    settings = Settings(
        data_dir=root / "data",
        max_concurrent_jobs=args.concurrency,
        # the soak measures the pipeline, not the per-user limits
        max_active_jobs_per_user=args.jobs,
        max_running_jobs_per_user=args.concurrency,
        drain_interval_s=0.5,
        progress_interval_s=30.0,
        heartbeat_interval_s=5.0,
        heartbeat_stale_s=120.0,
    )
    components = build_components(settings)
    launcher = ThreadLauncher(args.concurrency, on_exit=lambda: kick_loop())  # kick_loop is defined with the loop
    components.launcher = launcher
    launcher.bind(lambda job_id, attempt: run_worker(components, job_id, attempt))
    counter = CountingTrainer(training.trainer.run)
    training.trainer.run = counter

    print(f"soak: {args.jobs} jobs, concurrency {args.concurrency}, data in {root}", flush=True)
    print("baseline: training the same spec directly ...", flush=True)
    baseline = baseline_jobs_per_s(spec, args.baseline_jobs, args.concurrency, root / "baseline")

    loop = DispatchLoop(Dispatcher(components), settings.drain_interval_s)

    def kick_loop() -> None:  # a worker slot is free: drain now, as the server does after a submit
        loop.kick()

    service = JobService(components, kick=loop.kick)
    loop.start()
    accepted: list[str] = []
    accepted_lock = threading.Lock()
    duplicate_every = round(1 / args.duplicate_fraction) if args.duplicate_fraction > 0 else 0
    started = time.perf_counter()

    def submit(index: int) -> None:
        job = service.submit(f"user_{index % args.users}", spec)
        if duplicate_every and index % duplicate_every == 0:
            components.queue.send(job_message(job.id))  # an at-least-once redelivery
        with accepted_lock:
            accepted.append(job.id)

    with ThreadPoolExecutor(args.clients) as clients:
        list(clients.map(submit, range(args.jobs)))
    submitted_s = time.perf_counter() - started
    print(f"submitted {len(accepted)} jobs in {submitted_s:.1f} s", flush=True)

    deadline = started + args.deadline_s
    terminal = JobStatus.terminal()
    while time.perf_counter() < deadline:
        done = sum(components.store.count(statuses={status}) for status in terminal)
        if done >= len(accepted):
            break
        time.sleep(1.0)
    elapsed = time.perf_counter() - started
    loop.stop()
    launcher.shutdown(wait=True)

    statuses: collections.Counter[str] = collections.Counter()
    lost = []
    for job_id in accepted:
        job = components.store.get(job_id)
        if job is None or not job.status.is_terminal:
            lost.append(job_id)
        statuses[job.status.value if job else "missing"] += 1
    runs_per_job = collections.Counter(job_id for job_id, _ in counter.calls.elements())
    twice_one_attempt = [key for key, n in counter.calls.items() if n > 1]
    run_more_than_once = [job_id for job_id, n in runs_per_job.items() if n > 1]
    failed = [components.store.get(job_id) for job_id in accepted]
    errors = collections.Counter(job.error.code for job in failed if job is not None and job.error is not None)
    finished = sum(statuses[status.value] for status in terminal)
    throughput = finished / elapsed

    print(f"accepted    {len(accepted)}")
    print(f"lost        {len(lost)}  (missing, or not terminal after {elapsed:.0f} s)")
    print(
        f"duplicated  {len(set(run_more_than_once))}  (trained more than once; same attempt twice: {len(twice_one_attempt)})"
    )
    print(f"terminal    {finished}  " + "  ".join(f"{name}={count}" for name, count in sorted(statuses.items())))
    if errors:
        print("errors      " + "  ".join(f"{code}={count}" for code, count in sorted(errors.items())))
    print(f"trained     {sum(counter.calls.values())} runs for {len(runs_per_job)} jobs")
    print(f"throughput  {throughput:.2f} jobs/s over {elapsed:.1f} s")
    print(f"baseline    {baseline:.2f} jobs/s (the same training called directly on {args.concurrency} threads)")
    print(f"ratio       {throughput / baseline:.2f} of the baseline")
    if args.keep:
        print(f"data kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if not lost and not run_more_than_once else 1


if __name__ == "__main__":
    sys.exit(main())
